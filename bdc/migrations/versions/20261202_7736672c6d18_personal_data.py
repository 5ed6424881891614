"""personal data: the erased attendees' tombstones, a beneficiary's retention consent and when it was anonymised

Revision ID: 7736672c6d18
Revises: 2ea86d9ec594
Create Date: 2026-12-02 21:06:03.934957
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import bdc.types

revision: str = '7736672c6d18'
down_revision: str | None = '2ea86d9ec594'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('erased_attendees',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('attendee_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('erased_at', bdc.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_erased_attendees_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erased_attendees')),
    sa.UniqueConstraint('tenant_id', 'attendee_id', name=op.f('uq_erased_attendees_tenant_id_attendee_id'))
    )
    with op.batch_alter_table('beneficiaries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retention_consent', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('anonymised_at', bdc.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('beneficiaries', schema=None) as batch_op:
        batch_op.drop_column('anonymised_at')
        batch_op.drop_column('retention_consent')

    op.drop_table('erased_attendees')
