package outbox

// UsageThresholdReached is written by usage ingestion in the same write as the increment that
// makes a subscription's period total of a SKU reach one of the SKU's thresholds: once per
// subscription, SKU, threshold and period (SPEC 8.1, 13); usage.ThresholdDetail is its detail.
const UsageThresholdReached = "usage.threshold_reached"
