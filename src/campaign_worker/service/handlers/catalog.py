"""Catalog facts (ad products, targeting categories): reference data, applied before the
commands of the same batch that may consult it. A product's buyability is a hold on each of
its open campaigns."""

from __future__ import annotations

from dataclasses import replace

from campaign_worker.domain import commands as cmd
from campaign_worker.domain.model import AdProduct
from campaign_worker.domain.serving import buyable_signal
from campaign_worker.service.batch import Batch
from campaign_worker.service.handlers.route import Route, Wants
from campaign_worker.service.inbound import Inbound
from campaign_worker.service.reactions import CATALOG, apply_signal


def handle_product_upserted(batch: Batch, item: Inbound, command: cmd.UpsertAdProduct) -> None:
    """Store the product; every open campaign of it gets `product_not_buyable` set or cleared
    (the processor loaded them when the flag flips)."""
    product = command.product
    batch.put_product(product)
    signal = buyable_signal(product.buyable)
    for cid, campaign in sorted(batch.state.campaigns.items()):
        if campaign.ad_product_id == product.id:
            apply_signal(batch, item, cid, signal, CATALOG)


def handle_product_deleted(batch: Batch, item: Inbound, command: cmd.DeleteAdProduct) -> None:
    known = batch.state.products.get(command.ad_product_id)
    batch.put_product(
        replace(known, deleted=True)
        if known is not None
        else AdProduct(
            id=command.ad_product_id,
            name="",
            unit_ids=(),
            unit_set_valid=False,
            buyable=False,
            deleted=True,
        )
    )


def handle_category(batch: Batch, item: Inbound, command: cmd.UpsertCategory) -> None:
    batch.put_category(command.category_id, command.state)


def _buyability(command: cmd.UpsertAdProduct, item: Inbound) -> Wants:
    return Wants(buyability=command.product)


def _the_product(command: cmd.DeleteAdProduct, item: Inbound) -> Wants:
    """Read the product being deleted, so its tombstone keeps its name and unit set."""
    return Wants(products=frozenset({command.ad_product_id}))


def _nothing(command: object, item: Inbound) -> Wants:
    return Wants()


ROUTES = (
    Route((cmd.UpsertAdProduct,), handle_product_upserted, _buyability),
    Route((cmd.DeleteAdProduct,), handle_product_deleted, _the_product),
    Route((cmd.UpsertCategory,), handle_category, _nothing),
)
