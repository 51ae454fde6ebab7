package outbox

// Customer lifecycle event types (SPEC 13), written by the subscriptions service in the same
// transaction as the subscription change; subscriptions.EventDetail is their detail.
const (
	// CustomerCreated: a tenant's first subscription was created.
	CustomerCreated = "customer.created"
	// CustomerUpgraded: a subscription moved to another plan.
	CustomerUpgraded = "customer.upgraded"
	// CustomerCancelled: a subscription was cancelled, now or at the end of the period.
	CustomerCancelled = "customer.cancelled"
)
