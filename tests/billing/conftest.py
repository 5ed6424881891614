"""A tenant with folders at Wedof's billing steps, on each backend (no worker, no Wedof)."""

from __future__ import annotations

from datetime import date

import pytest

from bdc import db as bdc_db
from bdc.models import (
    Beneficiary,
    BillingMode,
    BillingSettings,
    Enrollment,
    Program,
    Tenant,
    User,
    UserRole,
    WedofConnection,
)

# The training action's price, as the published sample folder gives it (20 % VAT).
SAMPLE_PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}


@pytest.fixture
def billing_world(db_url, app_env):
    """``(tenant_id, [enrollment ids])``: four folders toBill with the sample price, billing in auto mode."""
    app_env(database_url=db_url)
    with bdc_db.session_scope() as session:
        tenant = Tenant(name="Bilans Conseil SARL", slug="billing")
        session.add(tenant)
        session.flush()
        session.add(WedofConnection(tenant_id=tenant.id, api_key="k", organism_siret="12345678900011"))
        session.add(BillingSettings(tenant_id=tenant.id, mode=BillingMode.AUTO, seller_address="1 rue de Paris\n75001 Paris"))
        ids = []
        for n in range(4):
            user = User(tenant_id=tenant.id, email=f"b{n}@x.fr", first_name="Zoé", last_name=f"Martin{n}",
                        role=UserRole.STUDENT)
            session.add(user)
            session.flush()
            beneficiary = Beneficiary(tenant_id=tenant.id, user_id=user.id, external_id=f"att-{n}",
                                      address="3 allée des Lilas", postal_code="69001", city="Lyon")
            program = Program(tenant_id=tenant.id, name="Bilan de compétences 24 h", external_id=f"ta-{n}")
            session.add_all([beneficiary, program])
            session.flush()
            enrollment = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=program.id,
                                    external_id=f"700000000{n}", wedof_state="serviceDoneValidated",
                                    wedof_billing_state="toBill", wedof_amounts=dict(SAMPLE_PRICE),
                                    session_start_date=date(2026, 9, 1), session_end_date=date(2026, 11, 15))
            session.add(enrollment)
            session.flush()
            ids.append(enrollment.id)
        tenant_id = tenant.id
    return tenant_id, ids
