package integration_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// TestSubscriptionEventsOnBus reads each lifecycle event of a subscription back from the
// EventBridge bus (through the stream poller and the publisher), not from the table.
func TestSubscriptionEventsOnBus(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "Bus D"})
	p := create(t, a, "partners", map[string]any{"name": "Bus P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "Bus T", "parent": parent("partner", p.ID)})
	k := mkSKU(t, a, storageSKU(uniq("bus-gb")))
	basic := mkPlan(t, a, uniq("basic"), true, k.ID)
	pro := mkPlan(t, a, uniq("pro"), true, k.ID)
	var s subOut
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": basic.ID, "quantity": 3}, &s)
	a.must(200, "PUT", "/api/v1/subscriptions/"+s.ID, map[string]any{"planId": pro.ID}, nil)
	a.must(200, "DELETE", "/api/v1/subscriptions/"+s.ID+"?at=now", nil, nil)

	for _, typ := range []string{outbox.CustomerCreated, outbox.CustomerUpgraded, outbox.CustomerCancelled} {
		t.Run(typ, func(t *testing.T) {
			ev := waitForEvent(t, typ, func(e busEvent) bool {
				var d subscriptions.EventDetail
				return json.Unmarshal(e.Data, &d) == nil && d.SubscriptionID == s.ID
			})
			var d subscriptions.EventDetail
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			if ev.ID == "" || ev.Source != "cms" || ev.DetailType != typ || d.TenantID != tn.ID || !strings.HasSuffix(ev.Path, tn.ID+"/") {
				t.Fatalf("event %+v / %+v", ev, d)
			}
			if typ == outbox.CustomerUpgraded && d.PlanID != pro.ID {
				t.Fatalf("upgraded to %s, want %s", d.PlanID, pro.ID)
			}
		})
	}
}
