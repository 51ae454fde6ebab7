// Command commissions is the Lambda function serving the commissions routes behind API Gateway (REST API,
// proxy integration). See routes.Commissions for what it serves.
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
	handler, err := app.HTTPFunction(context.Background(), routes.FnCommissions)
	if err != nil {
		slog.Error("start", "function", "commissions", "err", err)
		os.Exit(1)
	}
	lambda.Start(handler)
}
