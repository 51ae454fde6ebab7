package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/idempotency"
)

// memIdem is an in-memory idempotency.Store: the narrow interface the API needs.
type memIdem struct {
	mu   sync.Mutex
	recs map[string]idempotency.Record
}

func (m *memIdem) Claim(_ context.Context, key, bodyHash string, _ time.Time) (*idempotency.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[key]; ok {
		return &r, nil
	}
	m.recs[key] = idempotency.Record{BodyHash: bodyHash, Pending: true}
	return nil, nil
}

func (m *memIdem) Complete(_ context.Context, key string, rec idempotency.Record, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[key] = rec
	return nil
}

func (m *memIdem) Release(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, key)
	return nil
}

// An answer that says "retry" (a change that lost a race after the store's own retries, a
// throttle) is not remembered: the client's retry with the same key runs the request again
// instead of reading the same refusal for 24 hours. Every other answer is replayed.
func TestIdempotencyDoesNotRememberRetryableAnswers(t *testing.T) {
	cases := map[string]struct {
		fail     error
		remember bool
	}{
		"OKConcurrentUpdate": {apperr.New(apperr.Conflict, "concurrent_update", "The entity is being changed by someone else; retry."), false},
		"OKConcurrent":       {apperr.New(apperr.Conflict, "concurrent", "The run is busy; retry."), false},
		"OKThrottled":        {apperr.New(apperr.TooManyRequests, "too_many_requests", "Slow down."), false},
		"OKInternal":         {apperr.Wrap(context.DeadlineExceeded, "store"), false},
		"OKConflictAnswer":   {apperr.New(apperr.Conflict, "billing_id_taken", "The billingId is already in use."), true},
		"OKInvalid":          {apperr.Field("name", "required", "name is required"), true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			api := httpapi.New(httpapi.NewPager([]byte("0123456789abcdef0123456789abcdef")), &memIdem{recs: map[string]idempotency.Record{}}, nil)
			calls := 0
			api.Handle(httpapi.Route{Method: "POST", Path: "/things", Public: true, Status: http.StatusCreated},
				func(r *httpapi.Request) (httpapi.Response, error) {
					calls++
					if calls == 1 {
						return httpapi.Response{}, c.fail
					}
					return httpapi.Response{Data: map[string]int{"call": calls}}, nil
				})
			post := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest("POST", "/things", strings.NewReader(`{"name":"x"}`))
				req.Header.Set("Idempotency-Key", "k1")
				rec := httptest.NewRecorder()
				api.ServeHTTP(rec, req)
				return rec
			}
			first, second := post(), post()
			if c.remember {
				if calls != 1 || second.Code != first.Code || second.Body.String() != first.Body.String() {
					t.Fatalf("the answer must be replayed: %d calls, %d %s then %d %s", calls, first.Code, first.Body, second.Code, second.Body)
				}
				return
			}
			if calls != 2 || second.Code != http.StatusCreated {
				t.Fatalf("the retry must run again: %d calls, %d %s then %d %s", calls, first.Code, first.Body, second.Code, second.Body)
			}
			if third := post(); calls != 2 || third.Body.String() != second.Body.String() {
				t.Fatalf("the success is then replayed: %d calls, %s", calls, third.Body)
			}
		})
	}
}

// An answer that asks for part of the request again (Partial: usage records answered "retry")
// is not remembered either: the resend with the same key runs the handler, and its complete
// answer is then replayed.
func TestIdempotencyDoesNotRememberPartialAnswers(t *testing.T) {
	api := httpapi.New(httpapi.NewPager([]byte("0123456789abcdef0123456789abcdef")), &memIdem{recs: map[string]idempotency.Record{}}, nil)
	calls := 0
	api.Handle(httpapi.Route{Method: "POST", Path: "/usage", Public: true, Status: http.StatusAccepted},
		func(r *httpapi.Request) (httpapi.Response, error) {
			calls++
			return httpapi.Response{Data: map[string]int{"call": calls}, Partial: calls == 1}, nil
		})
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/usage", strings.NewReader(`{"records":[]}`))
		req.Header.Set("Idempotency-Key", "k1")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		return rec
	}
	first, second, third := post(), post(), post()
	if first.Code != http.StatusAccepted || second.Code != http.StatusAccepted || calls != 2 {
		t.Fatalf("the partial answer must not be replayed: %d calls, %d %s then %d %s", calls, first.Code, first.Body, second.Code, second.Body)
	}
	if third.Body.String() != second.Body.String() || third.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the complete answer is then replayed: %d calls, %s", calls, third.Body)
	}
}
