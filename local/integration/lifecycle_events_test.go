package integration_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// TestSubscriptionEventsOnBus reads each lifecycle event of a subscription back from the
// EventBridge bus (through the stream poller and the publisher), not from the table: created,
// upgraded, cancelled now, and cancelled at period end. A cancellation at period end is
// announced when it is requested (docs/catalog.md): its customer.cancelled carries mode
// period_end and the instant it will take effect, and nothing more is published when it does.
// It runs on the clocked server, which is moved past the period's end for that.
func TestSubscriptionEventsOnBus(t *testing.T) {
	api := clockedServer(t)
	now := api.freeze(t)
	a := api.on(admin(t))
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
	var later, scheduled subOut
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": basic.ID, "quantity": 2}, &later)
	a.must(200, "DELETE", "/api/v1/subscriptions/"+later.ID+"?at=period_end", nil, &scheduled)
	end := period.Of(now).End()
	if scheduled.Status != "active" || scheduled.CancelAt == nil || !scheduled.CancelAt.Equal(end) {
		t.Fatalf("scheduled %+v, want active until %s", scheduled, end)
	}

	of := func(subID string) func(busEvent) bool {
		return func(e busEvent) bool {
			var d subscriptions.EventDetail
			return json.Unmarshal(e.Data, &d) == nil && d.SubscriptionID == subID
		}
	}
	// read waits for the event of type typ about subID and checks its envelope.
	read := func(t *testing.T, typ, subID string) (busEvent, subscriptions.EventDetail) {
		t.Helper()
		ev := waitForEvent(t, typ, of(subID))
		var d subscriptions.EventDetail
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if ev.ID == "" || ev.Source != "cms" || ev.DetailType != typ || d.TenantID != tn.ID || !strings.HasSuffix(ev.Path, tn.ID+"/") {
			t.Fatalf("event %+v / %+v", ev, d)
		}
		return ev, d
	}
	for _, typ := range []string{outbox.CustomerCreated, outbox.CustomerUpgraded, outbox.CustomerCancelled} {
		t.Run(typ, func(t *testing.T) {
			_, d := read(t, typ, s.ID)
			if typ == outbox.CustomerUpgraded && (d.PlanID != pro.ID || d.PreviousPlanID != basic.ID) {
				t.Fatalf("upgraded from %s to %s, want %s to %s", d.PreviousPlanID, d.PlanID, basic.ID, pro.ID)
			}
			if typ == outbox.CustomerCancelled && (d.Mode != "now" || d.CancelAt == nil || d.CancelAt.After(end)) {
				t.Fatalf("cancelled %+v", d)
			}
		})
	}
	t.Run(outbox.CustomerCancelled+"/period_end", func(t *testing.T) {
		ev, d := read(t, outbox.CustomerCancelled, later.ID)
		if d.Mode != "period_end" || d.CancelAt == nil || !d.CancelAt.Equal(end) || d.PlanID != basic.ID {
			t.Fatalf("cancelled %+v, want mode period_end at %s", d, end)
		}
		if ev.Time.Before(now) || !ev.Time.Before(end) {
			t.Fatalf("published with time %s: not when requested (%s), before the period's end (%s)", ev.Time, now, end)
		}
	})
	t.Run("NothingMoreWhenThePeriodEnds", func(t *testing.T) {
		api.setNow(t, end.Add(time.Hour))
		var got subOut
		a.must(200, "GET", "/api/v1/subscriptions/"+later.ID, nil, &got)
		var h []historyOut
		a.must(200, "GET", "/api/v1/subscriptions/"+later.ID+"/history", nil, &h)
		var actions []string
		for _, e := range h {
			actions = append(actions, e.Action)
		}
		if got.Status != "cancelled" || !slices.Equal(actions, []string{"create", "cancel", "cancel_effective"}) || h[2].Actor != "system" {
			t.Fatalf("after the period: %+v, history %v", got, actions)
		}
		// One event, waited for (never assumed after a sleep); none more once the bus caught up.
		waitForEvent(t, outbox.CustomerCancelled, func(e busEvent) bool {
			var d subscriptions.EventDetail
			return json.Unmarshal(e.Data, &d) == nil && d.SubscriptionID == later.ID
		})
		busCaughtUp(t, a, p.ID, basic.ID)
		if bus, stored := onBus(outbox.CustomerCancelled, ofSubscription(later.ID)), subEvents(t, outbox.CustomerCancelled, later.ID); len(bus) != 1 || len(stored) != 1 {
			t.Fatalf("customer.cancelled of the scheduled cancellation: %d on the bus, %d in the outbox, want one", len(bus), len(stored))
		}
	})
}
