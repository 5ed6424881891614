"""The words staff read, in French (the staff are French training organisations): per problem kind a
title, a one-line summary with its counts, the facts, and what to do; and the three messages built from
them (a problem opens, is still open, is resolved), for email and for chat.

Written only from a problem's facts (counts, dates, reason classes, API key names): never from a
beneficiary's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bdc.models import Problem, ProblemKind

ZONE = ZoneInfo("Europe/Paris")
PREFIX = "[BDC Wedof]"

TITLES = {
    ProblemKind.EVENTS_FAILED: "Événements Wedof en échec",
    ProblemKind.INBOX_STUCK: "Événements Wedof en attente",
    ProblemKind.SYNC_STALE: "Synchronisation Wedof en retard",
    ProblemKind.SYNC_FAILED: "Échec de la synchronisation Wedof",
    ProblemKind.KEY_REVOKED: "Clé API Wedof refusée (401)",
    ProblemKind.WEDOF_UNREACHABLE: "Wedof injoignable",
    ProblemKind.LATE_DECLARATION: "Déclarations Wedof en retard",
    ProblemKind.ACTION_FAILED: "Déclarations Wedof refusées ou en échec",
    ProblemKind.BILLING_FAILED: "Facturation Wedof en échec",
    ProblemKind.API_CHANGED: "L'API Wedof a changé",
    ProblemKind.RECONCILIATION_DRIFT: "Écart entre Wedof et BDC",
}

ADVICE = {  # the page's own section and button names, so staff find them
    ProblemKind.EVENTS_FAILED:
        "sur la page d'intégration, section « Événements en échec », lisez la raison de chaque événement, "
        "corrigez la cause, puis cliquez sur « Tout relancer ».",
    ProblemKind.INBOX_STUCK:
        "vérifiez que les workers Celery et Redis tournent (Flower montre les workers actifs) ; les événements "
        "seront traités d'eux-mêmes dès leur retour, rien n'est perdu.",
    ProblemKind.SYNC_STALE:
        "vérifiez que le planificateur (celery beat) et le worker de la file « sync » tournent, puis consultez "
        "l'historique de la section « Synchronisation » de la page ; « Synchroniser maintenant » en lance une.",
    ProblemKind.SYNC_FAILED:
        "lisez l'erreur dans l'historique de la section « Synchronisation » de la page, corrigez la cause puis "
        "cliquez sur « Synchroniser maintenant ».",
    ProblemKind.KEY_REVOKED:
        "créez une nouvelle clé API dans Wedof (Mon compte, section API) et enregistrez-la dans la connexion "
        "(API d'administration : PATCH /api/integrations/wedof/connection). Rien ne peut être lu ni déclaré "
        "dans Wedof d'ici là.",
    ProblemKind.WEDOF_UNREACHABLE:
        "vérifiez l'adresse de l'API dans la connexion et l'accès réseau du serveur. Si Wedof est en panne, "
        "rien à faire : les synchronisations reprendront d'elles-mêmes.",
    ProblemKind.LATE_DECLARATION:
        "section « Déclarations à Wedof » de la page, approuvez les déclarations en retard ou déclarez-les à "
        "la main, puis cliquez sur « Marquer comme lu » dans la liste « Avis ».",
    ProblemKind.ACTION_FAILED:
        "section « Déclarations à Wedof » de la page, lisez la raison de chaque déclaration, corrigez-la puis "
        "relancez-la ; cliquez ensuite sur « Marquer comme lu » dans la liste « Avis ».",
    ProblemKind.BILLING_FAILED:
        "section « Facturation » de la page, « Factures en échec » : corrigez la cause puis relancez chaque "
        "facture (elle garde son numéro) ; cliquez ensuite sur « Marquer comme lu » dans la liste « Avis ».",
    ProblemKind.API_CHANGED:
        "rien n'est perdu et la synchronisation continue ; transmettez ce message à votre équipe technique pour "
        "adapter la correspondance des champs, puis cliquez sur « Marquer comme lu » dans la liste « Avis ».",
    ProblemKind.RECONCILIATION_DRIFT:
        "consultez le dernier rapport de rapprochement sur la page ; lancez une synchronisation complète si "
        "l'écart persiste, puis cliquez sur « Marquer comme lu » dans la liste « Avis ».",
}


def plural(count: int, singular: str, many: str | None = None) -> str:
    return f"{count} {singular if count in (0, 1) else (many or singular + 's')}"


def _agree(count: int, one: str, many: str, bare: bool = False) -> str:
    """French agreement: "1 facture" / "3 factures"; ``bare``: the words alone ("a" / "ont")."""
    words = one if count in (0, 1) else many
    return words if bare else f"{count} {words}"


def when(value: str | datetime | None) -> str:
    """A moment as staff read it: "02/12/2026 à 10:15" (heure de Paris)."""
    if value is None:
        return "date inconnue"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(ZONE).strftime("%d/%m/%Y à %H:%M")


def period(seconds: float) -> str:
    """A reminder period as staff read it: "24 h", "2 jours", "6 h", "1 h 30", "10 min"."""
    seconds = int(seconds)
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds // 86400} jours"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d}"
    return f"{max(1, seconds // 60)} min"


def summary(kind: ProblemKind, facts: dict) -> str:
    """One line with the counts: the problem's ``summary`` on the page and in the API."""
    count = int(facts.get("count") or 0)
    if kind == ProblemKind.EVENTS_FAILED:
        return f"{plural(count, 'événement')} Wedof en échec"
    if kind == ProblemKind.INBOX_STUCK:
        return f"{plural(count, 'événement')} en attente depuis plus de 5 minutes"
    if kind == ProblemKind.SYNC_STALE:
        return f"Aucune synchronisation réussie depuis le {when(facts.get('since'))}"
    if kind == ProblemKind.SYNC_FAILED:
        return f"La dernière synchronisation a échoué ({facts.get('reason')})"
    if kind == ProblemKind.KEY_REVOKED:
        return "Wedof refuse la clé API (HTTP 401)"
    if kind == ProblemKind.WEDOF_UNREACHABLE:
        return f"Wedof ne répond pas ({facts.get('last_error')})"
    if kind == ProblemKind.LATE_DECLARATION:
        return f"{plural(count, 'déclaration')} en retard (plus de 3 jours ouvrés)"
    if kind == ProblemKind.ACTION_FAILED:
        return f"{_agree(count, 'déclaration refusée ou en échec', 'déclarations refusées ou en échec')}"
    if kind == ProblemKind.BILLING_FAILED:
        return f"{plural(count, 'facture')} en échec"
    if kind == ProblemKind.API_CHANGED:
        changed = int(facts.get("unknown_total") or 0) + int(facts.get("missing_total") or 0)
        return f"L'API Wedof a changé ({plural(changed, 'champ')})" if changed else "L'API Wedof a changé"
    if kind == ProblemKind.RECONCILIATION_DRIFT:
        drift = facts.get("drift")
        return f"Écart de {plural(int(drift), 'dossier')} avec Wedof" if drift is not None else "Écart avec Wedof"
    return TITLES.get(kind, str(kind))


def facts_of(kind: ProblemKind, facts: dict) -> list[str]:
    """What the problem is, in a few sentences (counts, dates, classes of reasons)."""
    count = int(facts.get("count") or 0)
    lines: list[str] = []
    if kind == ProblemKind.EVENTS_FAILED:
        failed = _agree(count, "n'a pas pu être traitée", "n'ont pas pu être traitées", bare=True)
        lines.append(f"{_agree(count, 'notification envoyée', 'notifications envoyées')} par Wedof (webhooks) "
                     f"{failed} ; la plus ancienne a été reçue le {when(facts.get('oldest_received_at'))}.")
        reasons = facts.get("reasons") or []
        if reasons:
            lines.append("Causes les plus fréquentes :")
            lines += [f"  - {label} ({n})" for label, n in reasons]
    elif kind == ProblemKind.INBOX_STUCK:
        lines.append(f"{_agree(count, 'événement reçu', 'événements reçus')} de Wedof "
                     f"{_agree(count, 'attend', 'attendent', bare=True)} un traitement depuis plus de 5 minutes ; "
                     f"le plus ancien a été reçu le {when(facts.get('oldest_received_at'))}.")
        if facts.get("parked"):
            lines.append(f"Dont {facts['parked']} en attente d'une nouvelle tentative programmée.")
    elif kind == ProblemKind.SYNC_STALE:
        last = facts.get("last_success_at")
        lines.append((f"Dernière synchronisation réussie : le {when(last)}." if last else
                      "Aucune synchronisation n'a encore réussi pour cette connexion.")
                     + f" Une synchronisation est prévue toutes les {period(facts.get('interval_seconds') or 3600)}.")
    elif kind == ProblemKind.SYNC_FAILED:
        lines.append(f"La synchronisation n° {facts.get('run_id')} a échoué le {when(facts.get('finished_at'))} : "
                     f"{facts.get('reason')}.")
    elif kind == ProblemKind.KEY_REVOKED:
        source = "la vérification de connexion" if facts.get("source") == "check" else "la synchronisation"
        lines.append(f"Wedof répond 401 (clé refusée) à {source} du {when(facts.get('seen_at'))} : la clé API "
                     "a été révoquée ou changée.")
    elif kind == ProblemKind.WEDOF_UNREACHABLE:
        lines.append(f"Les {facts.get('checks')} dernières vérifications de connexion n'ont pas obtenu de réponse "
                     f"de Wedof (dernière le {when(facts.get('last_checked_at'))} : {facts.get('last_error')}).")
    elif kind == ProblemKind.LATE_DECLARATION:
        lines.append(f"{plural(count, 'déclaration')} (entrée en formation ou fin de prestation) "
                     f"{_agree(count, 'dépasse', 'dépassent', bare=True)} le délai de 3 jours ouvrés que Wedof accorde.")
    elif kind == ProblemKind.ACTION_FAILED:
        by_kind = facts.get("by_kind") or {}
        refused, failed = int(by_kind.get("action_refused", 0)), int(by_kind.get("action_failed", 0))
        lines.append(f"{_agree(refused, 'déclaration refusée', 'déclarations refusées')} par Wedof et "
                     f"{_agree(failed, 'déclaration en échec', 'déclarations en échec')}, la dernière le "
                     f"{when(facts.get('newest_at'))}.")
    elif kind == ProblemKind.BILLING_FAILED:
        failed = _agree(count, "n'a pas pu être transmise", "n'ont pas pu être transmises", bare=True)
        lines.append(f"{_agree(count, 'facture', 'factures')} {failed} à Wedof, la dernière le "
                     f"{when(facts.get('newest_at'))}.")
    elif kind == ProblemKind.API_CHANGED:
        unknown, missing = facts.get("unknown_keys") or [], facts.get("missing_keys") or []
        lines.append("Wedof envoie des champs que la correspondance ne connaît pas, ou n'envoie plus des champs "
                     "attendus.")
        if unknown:
            lines.append(f"Champs nouveaux : {', '.join(unknown)}" + _more(facts.get("unknown_total"), unknown))
        if missing:
            lines.append(f"Champs absents : {', '.join(missing)}" + _more(facts.get("missing_total"), missing))
    elif kind == ProblemKind.RECONCILIATION_DRIFT:
        drift = facts.get("drift")
        lines.append("Le rapprochement trouve "
                     + (_agree(int(drift), "dossier compté", "dossiers comptés") + " différemment"
                        if drift is not None else "des écarts")
                     + " dans Wedof et dans BDC, même après une synchronisation.")
    return lines


def _more(total, shown: list) -> str:
    extra = int(total or 0) - len(shown)
    return f" (et {_agree(extra, 'autre', 'autres')})" if extra > 0 else ""


# -- the messages ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    subject: str
    body: str  # plain text email body
    chat: str  # the chat webhook's text


def _one_line(text: str) -> str:
    """A header-safe line: a tenant name holding a line break must not end the Subject header."""
    return " ".join(str(text).split())[:150]


def _subject(tenant: str, words: str) -> str:
    return f"{PREFIX} {_one_line(tenant)} : {words}"


def _block(problem: Problem) -> list[str]:
    facts = (problem.details or {}).get("condition") or {}
    return [f"■ {TITLES[problem.kind]}", *facts_of(problem.kind, facts), f"Que faire : {ADVICE[problem.kind]}"]


def _footer(link: str, reminder_every: float | None) -> list[str]:
    lines = ["", f"Page d'intégration : {link}", ""]
    if reminder_every:
        lines.append(f"Tant que le problème dure, un rappel est envoyé toutes les {period(reminder_every)} ; un "
                     "message vous prévient quand il est résolu.")
    lines += ["Les heures sont données à l'heure de Paris.", "--",
              "bdc-wedof-sync (message automatique, ne pas répondre)"]
    return lines


def _message(subject: str, lines: list[str], chat: str, link: str, reminder_every: float | None) -> Message:
    """The email greets, says ``lines`` and ends with the footer; the chat text is ``chat``."""
    body = ["Bonjour,", "", *lines, *_footer(link, reminder_every)]
    return Message(subject, "\n".join(body) + "\n", chat)


def opening(tenant: str, problems: list[Problem], link: str, reminder_every: float) -> Message:
    """One message for the problems of a tenant that opened in the same run."""
    if len(problems) == 1:
        subject = _subject(tenant, TITLES[problems[0].kind])
        intro = f"Un problème a été détecté pour {_one_line(tenant)} le {when(problems[0].opened_at)} :"
    else:
        subject = _subject(tenant, f"{len(problems)} problèmes détectés")
        intro = f"{len(problems)} problèmes ont été détectés pour {_one_line(tenant)} :"
    lines = [intro]
    for problem in problems:
        lines += ["", *_block(problem)]
    chat = [subject] + [f"• {TITLES[p.kind]} : {p.summary}" for p in problems] + [link]
    return _message(subject, lines, "\n".join(chat), link, reminder_every)


def reminder(tenant: str, problem: Problem, link: str, reminder_every: float) -> Message:
    subject = _subject(tenant, f"Rappel : {TITLES[problem.kind]}")
    lines = [f"Rappel : ce problème est toujours en cours pour {_one_line(tenant)}, depuis le "
             f"{when(problem.opened_at)}.", "", *_block(problem)]
    chat = f"{subject}\n• {problem.summary} (depuis le {when(problem.opened_at)})\n{link}"
    return _message(subject, lines, chat, link, reminder_every)


def resolution(tenant: str, problem: Problem, link: str) -> Message:
    subject = _subject(tenant, f"Résolu : {TITLES[problem.kind]}")
    lines = [f"Résolu : « {TITLES[problem.kind]} » n'est plus constaté pour {_one_line(tenant)} depuis le "
             f"{when(problem.resolved_at)}.",
             f"Le problème avait été détecté le {when(problem.opened_at)} (dernier état : {problem.summary}).",
             "Aucune action n'est nécessaire."]
    chat = f"{subject}\n• depuis le {when(problem.resolved_at)} (ouvert le {when(problem.opened_at)})\n{link}"
    return _message(subject, lines, chat, link, None)
