"""Staff notices: what is wrong now (:mod:`.conditions`), the problems it is grouped into
(:mod:`.problems`, the table's one owner), the French messages (:mod:`.messages`), the channels
they go out by (:mod:`.channels`: email over SMTP, a chat webhook), and one run tying them
together (:mod:`.service`), which the ``bdc.send_notices`` task calls every minute."""
