"""The shared data layer of the BDC back-office.

SQLAlchemy 2.0 models shaped like the BDC host system (tenants, users, beneficiaries, programs,
enrollments, evaluations, documents) plus the integration's own tables (Wedof connections, the
webhook inbox, sync runs, the audit log), the engine/session helpers every process uses, the
settings module, and the Alembic migrations. Nothing here imports the rest of the project.
"""
