#!/bin/sh
# Example Kafka ACL set for campaign-worker (StandardAuthorizer / AclAuthorizer): each
# principal gets only what its role needs; everything else is denied by the broker
# (allow.everyone.if.no.acl.found=false). Applied as it is by tests/e2e/test_kafka_security.py.
#
#   BOOTSTRAP=broker:9093 COMMAND_CONFIG=admin.properties ./deploy/kafka-acls.sh
#
# Settings (environment):
#   BOOTSTRAP           a listener the admin can use                  (required)
#   COMMAND_CONFIG      client properties of a super user (TLS/SASL)  (optional)
#   KAFKA_ACLS          the kafka-acls command                         (default kafka-acls.sh)
#   PREFIX              CAMPAIGN_WORKER_TOPIC_PREFIX of the deployment (default empty)
#   WORKER_GROUP        CAMPAIGN_WORKER_GROUP_ID                       (default campaign-worker)
#   WORKER, PLATFORM, MODERATION, PAYMENTS, AD_SERVER, NOTIFIER
#                       principals of the worker and of each other team's service
set -eu

: "${BOOTSTRAP:?set BOOTSTRAP to the broker address}"
KAFKA_ACLS=${KAFKA_ACLS:-kafka-acls.sh}
PREFIX=${PREFIX:-}
WORKER_GROUP=${WORKER_GROUP:-campaign-worker}
WORKER=${WORKER:-User:campaign-worker}
PLATFORM=${PLATFORM:-User:ad-platform}
MODERATION=${MODERATION:-User:moderation}
PAYMENTS=${PAYMENTS:-User:payment-service}
AD_SERVER=${AD_SERVER:-User:ad-server}
NOTIFIER=${NOTIFIER:-User:notification-service}

acl() {
  if [ -n "${COMMAND_CONFIG:-}" ]; then
    $KAFKA_ACLS --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" --add --force "$@"
  else
    $KAFKA_ACLS --bootstrap-server "$BOOTSTRAP" --add --force "$@"
  fi
}

t() { printf -- "--topic %scampaign.%s " "$PREFIX" "$1"; }

# --- the worker ------------------------------------------------------------------------
# reads every inbound topic, in its own consumer group (commit, and describe for the lag probe)
# shellcheck disable=SC2046
acl --allow-principal "$WORKER" --operation Read --operation Describe \
  $(t commands) $(t reviews) $(t payments) $(t schedule) $(t delivery) $(t catalog) \
  --group "$WORKER_GROUP"
# writes every outbound topic (the outbox relay) and, for `dlq replay` only, the inbound ones:
# a replayed message is published again by the relay to the topic it came from
# shellcheck disable=SC2046
acl --allow-principal "$WORKER" --operation Write --operation Describe \
  $(t events) $(t notifications) $(t settlements) $(t dlq) $(t state) \
  $(t commands) $(t reviews) $(t payments) $(t schedule) $(t delivery) $(t catalog)
# creates its topics at start (CAMPAIGN_WORKER_CREATE_TOPICS=false makes this unnecessary)
acl --allow-principal "$WORKER" --operation Create --resource-pattern-type prefixed \
  --topic "${PREFIX}campaign."
# reads the state topic's cleanup.policy at start, to warn when it is not compacted
# shellcheck disable=SC2046
acl --allow-principal "$WORKER" --operation DescribeConfigs $(t state)

# --- who may write which inbound topic -------------------------------------------------
# shellcheck disable=SC2046
acl --allow-principal "$PLATFORM" --operation Write --operation Describe $(t commands) $(t catalog)
# shellcheck disable=SC2046
acl --allow-principal "$MODERATION" --operation Write --operation Describe $(t reviews)
# shellcheck disable=SC2046
acl --allow-principal "$PAYMENTS" --operation Write --operation Describe $(t payments)
# shellcheck disable=SC2046
acl --allow-principal "$AD_SERVER" --operation Write --operation Describe $(t delivery)

# --- who may read what the worker publishes (consumer groups: any name) -----------------
# shellcheck disable=SC2046
acl --allow-principal "$PAYMENTS" --operation Read --operation Describe $(t settlements) \
  --group '*'
# shellcheck disable=SC2046
acl --allow-principal "$AD_SERVER" --operation Read --operation Describe $(t events) $(t state) \
  --group '*'
# shellcheck disable=SC2046
acl --allow-principal "$NOTIFIER" --operation Read --operation Describe $(t notifications) \
  --group '*'
# shellcheck disable=SC2046
acl --allow-principal "$PLATFORM" --operation Read --operation Describe $(t events) $(t dlq) \
  $(t state) --group '*'
