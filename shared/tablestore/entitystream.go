package tablestore

import (
	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
)

// EntityKind is the Kind attribute of every hierarchy entity item (entityItem); the API key
// provisioner's event source filter (infra) keeps the stream records whose image has it, with
// the Type attribute naming a channel level.
const EntityKind = "entity"

// EntityFromImage reads the hierarchy entity held by a stream image (a record's NewImage or
// OldImage): its id, type, tier, path, name and status. ok is false when the image is not an
// entity item or lacks its id or type.
func EntityFromImage(image map[string]events.DynamoDBAttributeValue) (e *hierarchy.Entity, ok bool) {
	if kind, _ := imageString(image, "Kind"); kind != EntityKind {
		return nil, false
	}
	pk, _ := imageString(image, "PK")
	id, _ := imageString(image, "ID")
	typ, _ := imageString(image, "Type")
	if id == "" || typ == "" || pk != entityPK(id) {
		return nil, false
	}
	e = &hierarchy.Entity{ID: id, Type: access.EntityType(typ)}
	e.Tier, _ = imageString(image, "Tier")
	e.Path, _ = imageString(image, "Path")
	e.Name, _ = imageString(image, "Name")
	e.Status, _ = imageString(image, "Status")
	return e, true
}

// EntityImage returns the stream image of an entity's item with the attributes EntityFromImage
// reads: its inverse, for tests and tools that build stream records.
func EntityImage(e *hierarchy.Entity) map[string]events.DynamoDBAttributeValue {
	it := toEntityItem(e)
	img := map[string]events.DynamoDBAttributeValue{
		"PK": events.NewStringAttribute(it.PK), "SK": events.NewStringAttribute(it.SK),
		"Kind": events.NewStringAttribute(it.Kind), "ID": events.NewStringAttribute(it.ID),
		"Type": events.NewStringAttribute(it.Type), "Path": events.NewStringAttribute(it.Path),
		"Name": events.NewStringAttribute(it.Name), "Status": events.NewStringAttribute(it.Status),
	}
	if it.Tier != "" {
		img["Tier"] = events.NewStringAttribute(it.Tier)
	}
	return img
}
