// Package httpapi is the HTTP layer every resource handler uses: the {code, data, errors}
// envelope, the error-to-status table, strict JSON decoding, body limits, the caller taken from
// the API Gateway authorizer context, Idempotency-Key, signed next tokens, and the route table
// from which the OpenAPI document is generated.
package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/channelbilling/cms/shared/apperr"
)

// ErrorBody is one entry of the envelope's errors array.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// PageInfo is added to the envelope of list answers.
type PageInfo struct {
	PageSize int    `json:"pageSize"`
	Next     string `json:"next,omitempty"`
}

// Envelope is every response body (SPEC 4).
type Envelope struct {
	Code   int         `json:"code"`
	Data   any         `json:"data"`
	Errors []ErrorBody `json:"errors"`
	Page   *PageInfo   `json:"page,omitempty"`
}

var statusOf = map[apperr.Kind]int{
	apperr.Invalid:         http.StatusBadRequest,
	apperr.Unprocessable:   http.StatusUnprocessableEntity,
	apperr.Unauthorized:    http.StatusUnauthorized,
	apperr.Forbidden:       http.StatusForbidden,
	apperr.Suspended:       http.StatusForbidden,
	apperr.NotFound:        http.StatusNotFound,
	apperr.Conflict:        http.StatusConflict,
	apperr.TooLarge:        http.StatusRequestEntityTooLarge,
	apperr.TooManyRequests: http.StatusTooManyRequests,
	apperr.Internal:        http.StatusInternalServerError,
}

// ErrorEnvelope converts err into a status and an envelope. Internal errors are logged with their
// cause and shown as "Internal error." only.
func ErrorEnvelope(err error, log *slog.Logger) (int, Envelope) {
	ae := apperr.As(err)
	status, ok := statusOf[ae.Kind]
	if !ok {
		status = http.StatusInternalServerError
	}
	env := Envelope{Code: status}
	if status == http.StatusInternalServerError {
		if log != nil {
			log.Error("internal error", "err", err)
		}
		env.Errors = []ErrorBody{{Code: "internal", Message: "Internal error."}}
		return status, env
	}
	if len(ae.Fields) > 0 {
		for _, f := range ae.Fields {
			env.Errors = append(env.Errors, ErrorBody{Code: f.Code, Message: f.Message, Field: f.Field})
		}
		return status, env
	}
	env.Errors = []ErrorBody{{Code: ae.Code, Message: ae.Message}}
	return status, env
}

// WriteJSON writes an envelope with the given status.
func WriteJSON(w http.ResponseWriter, status int, env Envelope) {
	if env.Errors == nil {
		env.Errors = []ErrorBody{}
	}
	env.Code = status
	b, err := json.Marshal(env)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":500,"data":null,"errors":[{"code":"internal","message":"Internal error."}]}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteError writes err as an envelope.
func WriteError(w http.ResponseWriter, err error, log *slog.Logger) {
	status, env := ErrorEnvelope(err, log)
	WriteJSON(w, status, env)
}
