"""Message type -> handler: the one routing table of the service."""

from __future__ import annotations

from campaign_worker.service import handlers, money, parts
from campaign_worker.service.handlers import BatchContext, Handler
from campaign_worker.service.inbound import Inbound


def _product_upserted(ctx: BatchContext, item: Inbound) -> None:
    handlers.handle_product_upserted(ctx, item)
    parts.product_buyability(ctx, item)


HANDLERS: dict[str, Handler] = {
    **handlers.HANDLERS,
    "catalog.ad_product_upserted": _product_upserted,
    "creative.create": parts.handle_creative,
    "creative.update": parts.handle_creative,
    "creative.delete": parts.handle_creative,
    "creative.pause": parts.handle_creative,
    "creative.resume": parts.handle_creative,
    "review.creative_approved": parts.handle_creative,
    "review.creative_rejected": parts.handle_creative,
    "review.campaign_suspended": parts.handle_hold_signal,
    "review.campaign_reinstated": parts.handle_hold_signal,
    "review.landing_page_status": parts.handle_hold_signal,
    "campaign.duplicate": parts.handle_duplicate,
    "catalog.category_upserted": parts.handle_category,
    "catalog.category_deleted": parts.handle_category,
    "payment.charge_succeeded": money.handle_charge_result,
    "payment.charge_failed": money.handle_charge_result,
    "payment.refund_succeeded": money.handle_refund_result,
    "payment.refund_failed": money.handle_refund_result,
    "refund.retry": money.handle_refund_retry,
    "delivery.reported": money.handle_delivery,
}
