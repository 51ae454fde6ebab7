package integration_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/publisher"
)

// invitedData reads the data of a user.invited event.
func invitedData(tb testing.TB, e busEvent) identity.InvitedDetail {
	tb.Helper()
	var d identity.InvitedDetail
	if err := json.Unmarshal(e.Data, &d); err != nil {
		tb.Fatalf("user.invited data %s: %v", e.Data, err)
	}
	return d
}

// storedEvent returns the outbox item of the user.invited event of userID.
func storedEvent(tb testing.TB, userID string) outbox.Event {
	tb.Helper()
	evs, err := deps.Store.Events(tb.Context(), outbox.UserInvited)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range evs {
		var d identity.InvitedDetail
		if json.Unmarshal(e.Detail, &d) == nil && d.UserID == userID {
			return e
		}
	}
	tb.Fatalf("no user.invited event for %s in the outbox", userID)
	return outbox.Event{}
}

// invite creates a user without password (which writes a user.invited event) and returns it.
func invite(tb testing.TB, email string) user {
	tb.Helper()
	var u user
	admin(tb).must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "Ev", "lastName": "Ent",
		"role": "platform_viewer", "scopeId": "platform"}, &u)
	return u
}

func TestOutboxPublished(t *testing.T) {
	u := invite(t, strings.ToLower(uniq("evt"))+"@example.test")
	got := waitForEvent(t, outbox.UserInvited, func(e busEvent) bool { return invitedData(t, e).UserID == u.ID })
	want := storedEvent(t, u.ID)
	if got.ID != want.ID || got.Type != outbox.UserInvited || got.Path != access.PlatformPath || !got.Time.Equal(want.Time) {
		t.Fatalf("on the bus %+v, in the outbox %+v", got.Detail, want)
	}
	if got.Source != publisher.Source || got.DetailType != outbox.UserInvited {
		t.Fatalf("envelope source %q, detail type %q", got.Source, got.DetailType)
	}
	if d := invitedData(t, got); d.Email != u.Email || d.InviteToken == "" {
		t.Fatalf("data %s", got.Data)
	}
}

// TestOutboxRetried fails the publication of one event once, as EventBridge may: the stream
// delivers it again and it reaches the bus, once, with its outbox id.
func TestOutboxRetried(t *testing.T) {
	for name, wholeCall := range map[string]bool{"EntryRejected": false, "CallFailed": true} {
		t.Run(name, func(t *testing.T) {
			email := strings.ToLower(uniq("retry")) + "@example.test"
			ft := faults.arm(func(d publisher.Detail) bool {
				return d.Type == outbox.UserInvited && strings.Contains(string(d.Data), `"email":"`+email+`"`)
			}, wholeCall)
			u := invite(t, email)
			mine := func(e busEvent) bool { return invitedData(t, e).UserID == u.ID }
			got := waitForEvent(t, outbox.UserInvited, mine)
			if n := faults.fired(ft); n != 1 {
				t.Fatalf("the fault fired %d times, want once", n)
			}
			if want := storedEvent(t, u.ID); got.ID != want.ID {
				t.Fatalf("id %s on the bus, %s in the outbox", got.ID, want.ID)
			}
			// The retry starts at the failed record: the event is not published a second time.
			time.Sleep(time.Second)
			if all := deliveries(outbox.UserInvited, mine); len(all) != 1 {
				t.Fatalf("%d deliveries of %s, want 1", len(all), got.ID)
			}
		})
	}
}
