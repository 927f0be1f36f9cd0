"""Contract topic names (docs/contract.md). Extend, never rename."""

from typing import Final

COMMANDS: Final = "campaign.commands"
REVIEWS: Final = "campaign.reviews"
PAYMENTS: Final = "campaign.payments"
SCHEDULE: Final = "campaign.schedule"
DELIVERY: Final = "campaign.delivery"
CATALOG: Final = "campaign.catalog"

EVENTS: Final = "campaign.events"
NOTIFICATIONS: Final = "campaign.notifications"
SETTLEMENTS: Final = "campaign.settlements"
DLQ: Final = "campaign.dlq"

INBOUND: Final = (COMMANDS, REVIEWS, PAYMENTS, SCHEDULE, DELIVERY, CATALOG)
OUTBOUND: Final = (EVENTS, NOTIFICATIONS, SETTLEMENTS, DLQ)
