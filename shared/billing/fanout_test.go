package billing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// fanoutWorld adds to the world what a run's fan-out uses of the store (one listing page of
// every subscription, recorded pages, the run's completion) and a queue that can refuse sends.
type fanoutWorld struct {
	*world
	pages    map[int]billing.FanoutPage
	failSend bool
}

func (w *fanoutWorld) SubscriptionPage(_ context.Context, cursor string, _ int) ([]*subscriptions.Subscription, string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cursor != "" {
		return nil, "", apperr.Field("cursor", "invalid", "one page only")
	}
	return append([]*subscriptions.Subscription(nil), w.subs...), "", nil
}

func (w *fanoutWorld) FanoutPage(_ context.Context, _ string, page int) (*billing.FanoutPage, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pg, ok := w.pages[page]
	if !ok {
		return nil, apperr.NotFoundf("no page")
	}
	return &pg, nil
}

func (w *fanoutWorld) RecordFanoutPage(_ context.Context, runID string, pg billing.FanoutPage, last bool) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pages[pg.Page]; ok {
		return false, nil
	}
	w.pages[pg.Page] = pg
	w.runs[runID].TenantsTotal += len(pg.Tenants)
	w.runs[runID].Planned = w.runs[runID].Planned || last
	return true, nil
}

func (w *fanoutWorld) CountedTenants(_ context.Context, runID string, tenants []string) (map[string]bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, t := range tenants {
		out[t] = w.counted[runID+"#"+t]
	}
	return out, nil
}

func (w *fanoutWorld) CompleteRun(_ context.Context, id, status string, at time.Time, _ outbox.Event) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.runs[id]
	if r.Status != billing.RunRunning {
		return false, nil
	}
	r.Status, r.CompletedAt = status, &at
	return true, nil
}

func (w *fanoutWorld) Send(ctx context.Context, msgs []billing.Message) error {
	w.mu.Lock()
	fail := w.failSend
	w.mu.Unlock()
	if fail && len(msgs) > 0 {
		return errors.New("injected queue failure")
	}
	return w.world.Send(ctx, msgs)
}

// TestFanoutRedeliveredAfterCompletionQueuesClose: the last fan-out page completes the run
// when every tenant is done by then (here: its only subscription ended before the period, so
// the page queues nobody) and then queues the close. When that send fails the message is
// delivered again; the run is completed by then, and the redelivery must still queue the
// close. Before, it returned at once ("a page of a run that is over") and the run stayed
// unclosed: no commissions, no exports, until someone started the period again.
func TestFanoutRedeliveredAfterCompletionQueuesClose(t *testing.T) {
	w := &fanoutWorld{world: newWorld(), pages: map[int]billing.FanoutPage{}}
	p := w.addEntity("prt_p", access.Partner, nil, nil)
	tn := w.addEntity("tnt_gone", access.Tenant, p, nil)
	s := w.subscribe("sub_gone", tn, "pln_s", dec(t, "1"), oct(1, 0).AddDate(0, -3, 0), oct(1, 0).AddDate(0, -3, 0))
	end := oct(1, 0).AddDate(0, -1, 0)
	s.CancelAt, s.Status = &end, subscriptions.StatusCancelled

	now := october.End().Add(5 * time.Minute)
	svc := w.service(&now)
	svc.Store, svc.Queue = w, w
	runID := "run-" + october.String()
	w.runs[runID] = &billing.Run{ID: runID, Period: october, Status: billing.RunRunning}
	m := billing.Message{Kind: billing.KindFanout, RunID: runID, Period: october.String(), Attempt: 1}

	w.failSend = true
	if err := svc.Process(context.Background(), m); err == nil {
		t.Fatal("the close could not be queued: the fan-out message must fail")
	}
	if r := w.runs[runID]; r.Status != billing.RunCompleted || !r.Planned || r.TenantsTotal != 0 {
		t.Fatalf("run %+v: completed by its last page", r)
	}
	w.failSend = false
	m.Attempt = 2
	if err := svc.Process(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	closes := 0
	for _, sent := range w.sent {
		if sent.Kind == billing.KindClose && sent.RunID == runID {
			closes++
		}
	}
	if closes != 1 {
		t.Fatalf("sent %+v: the redelivered page must queue the run's close", w.sent)
	}
}
