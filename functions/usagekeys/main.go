// Command usagekeys provisions the API Gateway API keys that meter callers (shared/usagekeys,
// shared/keyprovisioner): fed by the table's stream (channel entity items only), it creates a
// key for every platform, distributor and partner, moves a partner's key to its tier's usage
// plan when the tier changes and deletes the key of a deleted entity. Invoked with
// {"action":"sync"} (make sync-usage-keys), it converges every key at once.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	p, err := app.KeyProvisionerFromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(p.Handle)
}
