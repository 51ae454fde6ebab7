package tablestore_test

import (
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/tablestore"
)

func TestEntityFromImage(t *testing.T) {
	e := &hierarchy.Entity{ID: "prt_1", Type: access.Partner, Tier: hierarchy.TierPremium, Name: "Reseller", Status: hierarchy.StatusActive,
		Path: "/platform/dst_1/prt_1/", Parent: &hierarchy.Ref{Type: access.Distributor, ID: "dst_1"}}
	got, ok := tablestore.EntityFromImage(tablestore.EntityImage(e))
	if !ok || got.ID != e.ID || got.Type != e.Type || got.Tier != e.Tier || got.Path != e.Path || got.Name != e.Name || got.Status != e.Status {
		t.Fatalf("OK: round trip %+v, %v", got, ok)
	}
	bad := map[string]map[string]events.DynamoDBAttributeValue{
		"an outbox event": tablestore.OutboxImage(outbox.Event{ID: "evt_1", Type: "user.invited", Time: time.Unix(0, 0), Path: "/platform/", Detail: []byte("{}")}),
		"no image":        nil,
		"a key that is not the id's": func() map[string]events.DynamoDBAttributeValue {
			img := tablestore.EntityImage(e)
			img["PK"] = events.NewStringAttribute("ENT#other")
			return img
		}(),
		"a numeric type": func() map[string]events.DynamoDBAttributeValue {
			img := tablestore.EntityImage(e)
			img["Type"] = events.NewNumberAttribute("1")
			return img
		}(),
	}
	for name, img := range bad {
		if _, ok := tablestore.EntityFromImage(img); ok {
			t.Errorf("ErrNotEntity: %s read as an entity", name)
		}
	}
}
