package tablestore_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/tablestore"
)

// image is the stream image of the item the store writes for e: the item marshalled by the
// store itself, converted to Lambda's attribute values (strings and numbers are all it holds).
func image(t *testing.T, e outbox.Event) map[string]events.DynamoDBAttributeValue {
	t.Helper()
	item, err := tablestore.EventItem(e)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]events.DynamoDBAttributeValue{}
	for k, v := range item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			out[k] = events.NewStringAttribute(v.Value)
		case *types.AttributeValueMemberN:
			out[k] = events.NewNumberAttribute(v.Value)
		default:
			t.Fatalf("attribute %s: unexpected type %T", k, v)
		}
	}
	return out
}

func TestOutboxEvent(t *testing.T) {
	ev, err := outbox.New(outbox.UserInvited, "/platform/dst_1/", time.Date(2026, 3, 4, 5, 6, 7, 891, time.UTC), map[string]string{"userId": "usr_1"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		got, ok, err := tablestore.OutboxEvent(image(t, ev))
		if err != nil || !ok {
			t.Fatalf("ok %v, err %v", ok, err)
		}
		if got.ID != ev.ID || got.Type != ev.Type || !got.Time.Equal(ev.Time) || got.Path != ev.Path || string(got.Detail) != string(ev.Detail) {
			t.Fatalf("got %+v, want %+v", got, ev)
		}
	})

	t.Run("OutboxImage", func(t *testing.T) {
		// OutboxImage must be exactly the image of the stored item.
		want, err := json.Marshal(image(t, ev))
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(tablestore.OutboxImage(ev))
		if err != nil {
			t.Fatal(err)
		}
		var w, g map[string]any
		_ = json.Unmarshal(want, &w)
		_ = json.Unmarshal(got, &g)
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("OutboxImage %s, stored item %s", got, want)
		}
	})

	t.Run("NotAnEvent", func(t *testing.T) {
		for name, img := range map[string]map[string]events.DynamoDBAttributeValue{
			"entity":            {"PK": events.NewStringAttribute("ENT#dst_1"), "SK": events.NewStringAttribute("ENT"), "Kind": events.NewStringAttribute("entity")},
			"no kind":           {"PK": events.NewStringAttribute("EVENT#evt_1"), "SK": events.NewStringAttribute("EVENT")},
			"kind not a string": {"PK": events.NewStringAttribute("EVENT#evt_1"), "Kind": events.NewNumberAttribute("1")},
			"empty":             {},
		} {
			if _, ok, err := tablestore.OutboxEvent(img); ok || err != nil {
				t.Errorf("%s: ok %v, err %v", name, ok, err)
			}
		}
	})

	t.Run("ErrMalformed", func(t *testing.T) {
		img := image(t, ev)
		img["Time"] = events.NewStringAttribute("yesterday")
		img["Detail"] = events.NewStringAttribute("{not json")
		img["Type"] = events.NewNumberAttribute("3") // wrong type: must not panic
		got, ok, err := tablestore.OutboxEvent(img)
		if !ok || err == nil {
			t.Fatalf("ok %v, err %v", ok, err)
		}
		for _, want := range []string{"Time", "Detail", "Type"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		if strings.Contains(err.Error(), "yesterday") || strings.Contains(err.Error(), "not json") {
			t.Errorf("error %q carries attribute values", err)
		}
		if got.ID != ev.ID {
			t.Errorf("id %q, want %q (for the logs)", got.ID, ev.ID)
		}
		var js json.RawMessage = got.Detail
		if len(js) != 0 {
			t.Errorf("detail kept: %s", js)
		}
	})

	t.Run("ErrBadKey", func(t *testing.T) {
		img := image(t, ev)
		img["PK"] = events.NewStringAttribute("EVENT#")
		if _, ok, err := tablestore.OutboxEvent(img); !ok || err == nil || !strings.Contains(err.Error(), "PK") {
			t.Fatalf("ok %v, err %v", ok, err)
		}
	})
}
