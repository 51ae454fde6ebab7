package integration_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/idempotency"
)

// idemKey is the key httpapi stores for a caller's Idempotency-Key on a route, and the hash of
// the body as client.do sends it.
func idemKey(t *testing.T, c client, route, key string, body any) (scoped, hash string) {
	t.Helper()
	claims, err := deps.Verifier.Verify(c.token)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return claims.Subject + "#" + route + "#" + key, hex.EncodeToString(sum[:])
}

// A request whose function died between the claim and its answer leaves a pending key: it
// answers idempotency_in_progress while the first request could still be running, and can be
// claimed again after idempotency.PendingTimeout.
func TestIdempotencyPendingTimeout(t *testing.T) {
	ctx := t.Context()
	a := admin(t)
	t.Run("StoreClock", func(t *testing.T) {
		key, hash := idemKey(t, a, "POST /api/v1/distributors", uniq("clock"), map[string]any{"name": "x"})
		t0 := time.Now()
		if prev, err := deps.Store.Claim(ctx, key, hash, t0); err != nil || prev != nil {
			t.Fatalf("first claim: %+v %v", prev, err)
		}
		prev, err := deps.Store.Claim(ctx, key, hash, t0.Add(idempotency.PendingTimeout-time.Second))
		if err != nil || prev == nil || !prev.Pending {
			t.Fatalf("within the timeout the claim is still pending: %+v %v", prev, err)
		}
		if prev, err := deps.Store.Claim(ctx, key, hash, t0.Add(idempotency.PendingTimeout+time.Second)); err != nil || prev != nil {
			t.Fatalf("after the timeout the key can be claimed again: %+v %v", prev, err)
		}
		// The takeover is itself a fresh claim: a third request waits for it.
		prev, err = deps.Store.Claim(ctx, key, hash, t0.Add(idempotency.PendingTimeout+2*time.Second))
		if err != nil || prev == nil || !prev.Pending {
			t.Fatalf("the new claim must hold: %+v %v", prev, err)
		}
	})
	t.Run("OKStaleClaimTakenOver", func(t *testing.T) {
		key := uniq("stale")
		body := map[string]any{"name": "Stale " + key}
		scoped, hash := idemKey(t, a, "POST /api/v1/distributors", key, body)
		// The claim of a request whose Lambda died a while ago.
		if _, err := deps.Store.Claim(ctx, scoped, hash, time.Now().Add(-idempotency.PendingTimeout-time.Second)); err != nil {
			t.Fatal(err)
		}
		first := a.do("POST", "/api/v1/distributors", body, "Idempotency-Key", key)
		if first.status != 201 {
			t.Fatalf("a stale pending key must not block the retry: %s", first.raw)
		}
		again := a.do("POST", "/api/v1/distributors", body, "Idempotency-Key", key)
		if again.status != 201 || string(again.Data) != string(first.Data) {
			t.Fatalf("the retry's answer is the one replayed:\n%s\n%s", first.raw, again.raw)
		}
	})
	t.Run("ErrStillRunning", func(t *testing.T) {
		key := uniq("running")
		body := map[string]any{"name": "Running " + key}
		scoped, hash := idemKey(t, a, "POST /api/v1/distributors", key, body)
		if _, err := deps.Store.Claim(ctx, scoped, hash, time.Now().Add(-5*time.Second)); err != nil {
			t.Fatal(err)
		}
		env := a.do("POST", "/api/v1/distributors", body, "Idempotency-Key", key)
		if env.status != 409 || !env.hasError("idempotency_in_progress", "") {
			t.Fatalf("a key claimed 5 s ago may still be running: %s", env.raw)
		}
	})
}
