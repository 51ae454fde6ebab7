// Command pricing is the Lambda function serving the pricing (SKU) routes behind API Gateway
// (REST API, proxy integration). See routes.Pricing for what it serves.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/routes"
)

func main() {
	ctx := context.Background()
	deps, err := app.FromLambdaEnv(ctx)
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	handler, err := deps.Handler(routes.FnPricing)
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	lambda.Start(httpadapter.New(handler).ProxyWithContext)
}
