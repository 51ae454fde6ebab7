// Command users is the Lambda function serving the users routes behind API Gateway (REST API,
// proxy integration). See routes.Users for what it serves.
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
	handler, err := app.HTTPFunction(context.Background(), routes.FnUsers)
	if err != nil {
		slog.Error("start", "function", "users", "err", err)
		os.Exit(1)
	}
	lambda.Start(handler)
}
