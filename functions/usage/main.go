// Command usage is the Lambda function serving the usage routes behind API Gateway (REST API,
// proxy integration): POST /api/v1/usage (up to 1,000 records, 5 MiB) and GET /api/v1/usage.
// See routes.Usage.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/routes"
)

func main() {
	handler, err := app.HTTPFunction(context.Background(), routes.FnUsage)
	if err != nil {
		slog.Error("start", "function", "usage", "err", err)
		os.Exit(1)
	}
	lambda.Start(handler)
}
