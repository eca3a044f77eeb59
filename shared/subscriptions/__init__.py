"""Graph change notifications: subscriptions per mailbox, the webhook inbox, lifecycle, renewal.

- `inbox`: the webhook (validation echo, parsing Graph's collections, the record cache, checking
  clientStates, coalescing into sync requests and lifecycle work).
- `clientstate`: a subscription's clientState and the Key Vault key it is derived from.
- `store`: the `subscriptions` table (a record per subscription, an index entity per mailbox).
- `manage`: ensure, create, release, recreate; lifecycle work; the disconnect hook.
- `renewal`: the renewal timer (`$batch` PATCHes, recreating what Graph lost).

Their collaborators are built in shared/wiring.py (`client_state_keys`, `webhook_inbox`,
`subscription_deps`); functions/graph_webhook.py holds the triggers.
"""
