"""Graph change notifications: subscriptions, the webhook inbox, lifecycle."""
