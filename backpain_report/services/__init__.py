"""Writes: every change to the app's rows, by entity, as ``<entity>_<action>`` functions.

- :mod:`.subscribers`: a sign-up (request and worker), confirmation, unsubscribing;
- :mod:`.deliveries`: resends, retrying failed deliveries, cancelling, download links;
- :mod:`.content`: reports (their edition), publishing articles, the bundled content;
- :mod:`.privacy`: erasure, the purge of unconfirmed sign-ups, deleting with stored PDFs.

Reads are in :mod:`backpain_report.selectors`; sending a delivery is
:mod:`backpain_report.delivery.sending`'s, suppressing an address
:mod:`backpain_report.rights.suppression`'s. Plain keyword-only functions, no HTTP objects: views,
admin actions, commands, tasks and tests call the same ones.
"""
