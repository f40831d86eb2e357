"""The case store: what the review station keeps — cases, their cells and decisions, named reviewers, the audit trail.

    store = open_store(store_dir, db_url=None)            # SQLite in STORE by default, PostgreSQL with a URL; migrated
    with store.transaction() as db:
        reviewer = check_password(db, "dr.ruiz", password)
        case = create_case(db, reviewer, "S-2026-0412")

Modules: ``schema`` (tables), ``migrations`` (Alembic), ``database`` (open, migrate), ``images`` (content-addressed
image folder), ``users`` (Argon2 passwords, roles), ``logins`` (sessions and bearer tokens), ``casework`` (create,
worklist, cells, decisions, signing, amendments, audit), ``export`` (a case as CSV/JSON; signed cells as a
folder-per-class dataset), ``differential`` (a sample's counts and shares, as the API's summary), ``report_facts``,
``report_pdf`` (the printable report), ``lis`` (a signed case as FHIR R4 and HL7 v2.5), ``times``, ``errors``. It
knows nothing of HTTP: neunn.serve puts it on the web.
"""

from neunn.cases.database import CaseStore, default_store_dir, open_store

__all__ = ["CaseStore", "default_store_dir", "open_store"]
