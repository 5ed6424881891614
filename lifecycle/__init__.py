"""The bilan's lifecycle, declared to Wedof from the BDC's evidence.

:mod:`lifecycle.rules` decides (pure), :mod:`lifecycle.actions` owns each decision's row and its
status, :mod:`lifecycle.evaluate` runs the rules over a tenant's data in pages; the worker's
``wedof.carry_out_action`` task makes the call.
"""
