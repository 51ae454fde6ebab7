package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/guregu/dynamo/v2"
)

// BusCreator is the part of the EventBridge client EnsureBus uses (*eventbridge.Client).
type BusCreator interface {
	CreateEventBus(ctx context.Context, in *eventbridge.CreateEventBusInput, optFns ...func(*eventbridge.Options)) (*eventbridge.CreateEventBusOutput, error)
}

// EnsureBus creates the EventBridge bus unless it exists; bus is a name or a bus ARN (what
// CMS_EVENT_BUS holds). In AWS the CDK stack creates it; locally moto needs it created.
func EnsureBus(ctx context.Context, c BusCreator, bus string) error {
	name := bus
	if _, after, ok := strings.Cut(bus, ":event-bus/"); ok && strings.HasPrefix(bus, "arn:") {
		name = after
	}
	if name == "default" {
		return nil // every account has it
	}
	_, err := c.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	var exists *ebtypes.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("create event bus %s: %w", name, err)
	}
	return nil
}

// StartOutbox starts publishing the outbox of table locally, as the deployed publisher function
// and its event source mapping do: it polls the table's stream into h (a publisher's Handle)
// with the given options. stop ends the polling and waits for the handler call under way. It
// fails when the table has no stream.
func StartOutbox(ctx context.Context, table dynamo.Table, client Client, h Handler, opts Options) (stop func(), err error) {
	arn, err := StreamARN(ctx, table)
	if err != nil {
		return nil, err
	}
	return New(client, arn, h, opts).Start(ctx), nil
}
