// Command bootstrap creates the platform entity and the first platform admin. It is invoked once
// after deployment (make bootstrap-admin); it is not behind API Gateway.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
)

func main() {
	deps, err := app.FromLambdaEnv(context.Background())
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(deps.BootstrapHandler)
}
