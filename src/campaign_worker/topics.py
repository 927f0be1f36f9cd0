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
STATE: Final = "campaign.state"  # compacted: the whole current state of each campaign

INBOUND: Final = (COMMANDS, REVIEWS, PAYMENTS, SCHEDULE, DELIVERY, CATALOG)
OUTBOUND: Final = (EVENTS, NOTIFICATIONS, SETTLEMENTS, DLQ, STATE)
# Topics the worker creates with `cleanup.policy=compact` (latest record per key wins).
COMPACTED: Final = (STATE,)
