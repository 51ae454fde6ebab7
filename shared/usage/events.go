package usage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
)

// ThresholdDetail is the detail of a usage.threshold_reached event.
type ThresholdDetail struct {
	TenantID       string        `json:"tenantId"`
	SubscriptionID string        `json:"subscriptionId"`
	SKU            string        `json:"sku"`
	Period         string        `json:"period"`
	Threshold      money.Decimal `json:"threshold"`
	// Quantity is the period's total right after the increment that crossed the threshold.
	Quantity money.Decimal `json:"quantity"`
	At       time.Time     `json:"at"`
}

// ThresholdEventID is the id of the event for one subscription, SKU, period and threshold:
// derived from them, so that the event is written at most once whatever retries happen (the
// store writes it under a condition that no item has its key).
func ThresholdEventID(k AggregateKey, threshold money.Decimal) string {
	sum := sha256.Sum256([]byte("usage.threshold_reached\x00" + k.String() + "\x00" + threshold.Reduce().String()))
	return "evt_thr_" + hex.EncodeToString(sum[:16])
}

// Crossed returns the thresholds t with before < t <= after, ascending (thresholds ascending).
func Crossed(thresholds []money.Decimal, before, after money.Decimal) []money.Decimal {
	var out []money.Decimal
	for _, t := range thresholds {
		if before.Cmp(t) < 0 && t.Cmp(after) <= 0 {
			out = append(out, t)
		}
	}
	return out
}

// ThresholdEvent returns the usage.threshold_reached event of aggregate a crossing threshold
// with total after the increment, written at instant at. It fails only when the detail cannot
// be encoded (a non-finite decimal).
func ThresholdEvent(a Aggregate, threshold, total money.Decimal, at time.Time) (outbox.Event, error) {
	d := ThresholdDetail{TenantID: a.TenantID, SubscriptionID: a.Key.SubscriptionID, SKU: a.Key.SKU,
		Period: a.Key.Period.String(), Threshold: threshold, Quantity: total, At: at.UTC()}
	b, err := json.Marshal(d)
	if err != nil {
		return outbox.Event{}, err
	}
	return outbox.Event{ID: ThresholdEventID(a.Key, threshold), Type: outbox.UsageThresholdReached,
		Time: at.UTC(), Path: a.TenantPath, Detail: b}, nil
}
