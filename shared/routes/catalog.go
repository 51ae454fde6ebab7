package routes

import (
	"net/http"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/httpapi"
)

// Pricing registers /api/v1/pricing: the SKUs (SPEC 8.1).
func Pricing(api *httpapi.API, svc *catalog.Service) {
	const base, fn, tag = "/api/v1/pricing", FnPricing, "pricing"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.PricingList, Tag: tag, List: true,
		Summary: "List SKUs, each with the rate in effect now and its rate history", Result: catalog.SKU{},
		Query: []httpapi.Param{{Name: "currency", Description: "Only SKUs priced in this currency."}}, Fields: listFields(catalog.SKUFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("currency")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.ListSKUs(req.Context(), req.Principal, q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: access.PricingCreate, Tag: tag, Status: http.StatusCreated,
		Summary: "Create a SKU with its first rate (effective from the current period unless effectiveFrom says later)",
		Body:    catalog.SKUInput{}, Result: catalog.SKU{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in catalog.SKUInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			k, err := svc.CreateSKU(req.Context(), req.Principal, in)
			return httpapi.Response{Data: k}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: access.PricingRead, Tag: tag,
		Summary: "Get a SKU", Result: catalog.SKU{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			k, err := svc.GetSKU(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: k}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}", Function: fn, Permission: access.PricingUpdate, Tag: tag,
		Summary: "Update a SKU; a rate records a new version effective from the first period starting on or after effectiveFrom (default: the next period)",
		Body:    catalog.SKUUpdateInput{}, Result: catalog.SKU{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in catalog.SKUUpdateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			k, err := svc.UpdateSKU(req.Context(), req.Principal, req.PathValue("id"), in)
			return httpapi.Response{Data: k}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{id}", Function: fn, Permission: access.PricingDelete, Tag: tag,
		Summary: "Delete a SKU that no plan charges (409 sku_in_use otherwise)"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			return httpapi.Response{}, svc.DeleteSKU(req.Context(), req.Principal, req.PathValue("id"))
		})
}

// Plans registers /api/v1/plans (SPEC 8.2).
func Plans(api *httpapi.API, svc *catalog.Service) {
	const base, fn, tag = "/api/v1/plans", FnPlans, "plans"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.PlansList, Tag: tag, List: true,
		Summary: "List plans (drafts only for those who may create plans)", Result: catalog.Plan{},
		Query:  []httpapi.Param{{Name: "status", Description: "draft, published or retired."}, {Name: "currency", Description: "Only plans in this currency."}},
		Fields: listFields(catalog.PlanFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("status", "currency")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.ListPlans(req.Context(), req.Principal, q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: access.PlansCreate, Tag: tag, Status: http.StatusCreated,
		Summary: "Create a draft plan", Body: catalog.PlanInput{}, Result: catalog.Plan{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in catalog.PlanInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			pl, err := svc.CreatePlan(req.Context(), req.Principal, in)
			return httpapi.Response{Data: pl}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: access.PlansRead, Tag: tag,
		Summary: "Get a plan", Result: catalog.Plan{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			pl, err := svc.GetPlan(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: pl}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}", Function: fn, Permission: access.PlansUpdate, Tag: tag,
		Summary: "Update a draft plan (409 plan_frozen once published)", Body: catalog.PlanUpdateInput{}, Result: catalog.Plan{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in catalog.PlanUpdateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			pl, err := svc.UpdatePlan(req.Context(), req.Principal, req.PathValue("id"), in)
			return httpapi.Response{Data: pl}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{id}", Function: fn, Permission: access.PlansDelete, Tag: tag,
		Summary: "Delete a draft plan (409 plan_not_draft otherwise)"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			return httpapi.Response{}, svc.DeletePlan(req.Context(), req.Principal, req.PathValue("id"))
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base + "/{id}/publish", Function: fn, Permission: access.PlansPublish, Tag: tag,
		Summary: "Publish a draft plan: it is frozen and open to subscriptions", Result: catalog.Plan{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			pl, err := svc.PublishPlan(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: pl}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base + "/{id}/retire", Function: fn, Permission: access.PlansRetire, Tag: tag,
		Summary: "Retire a published plan: no new subscriptions, existing ones keep running", Result: catalog.Plan{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			pl, err := svc.RetirePlan(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: pl}, err
		})
}

// PriceLists registers /api/v1/pricelists (SPEC 8.3). The override routes name the tenant
// {entityId} because API Gateway requires sibling path variables to share one name.
func PriceLists(api *httpapi.API, svc *catalog.PriceLists) {
	const base, fn, tag = "/api/v1/pricelists", FnPriceLists, "pricelists"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{entityId}", Function: fn, Permission: access.PriceListsRead, Tag: tag, List: true,
		Summary: "The effective buy and sell rate of every SKU for an entity in a period", Result: catalog.PriceListItem{},
		// Searched and sorted by the fields of each item's SKU (catalog.PriceLists.List).
		Query: []httpapi.Param{{Name: "period", Description: "YYYY-MM; default the current period."}}, Fields: listFields(catalog.SKUFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("period")
			if err != nil {
				return httpapi.Response{}, err
			}
			page, err := svc.List(req.Context(), req.Principal, req.PathValue("entityId"), q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			// The next token carries the period the first page resolved, even past a month end.
			if q.Filters == nil {
				q.Filters = map[string]string{}
			}
			q.Filters["period"] = page.Period.String()
			return req.Page(page.Items, q, page.Next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{entityId}/{skuId}", Function: fn, Permission: access.PriceListsWrite, Tag: tag,
		Summary: "Set a tenant's override rate for a SKU from the first period starting on or after effectiveFrom (default: the next period)",
		Body:    catalog.OverrideInput{}, Result: catalog.Override{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in catalog.OverrideInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			o, err := svc.PutOverride(req.Context(), req.Principal, req.PathValue("entityId"), req.PathValue("skuId"), in)
			return httpapi.Response{Data: o}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{entityId}/{skuId}", Function: fn, Permission: access.PriceListsWrite, Tag: tag,
		Summary: "End a tenant's override for a SKU from the first period starting on or after effectiveFrom (default: the next period)",
		Result:  catalog.Override{},
		Query:   []httpapi.Param{{Name: "effectiveFrom", Description: "YYYY-MM-DD, not before the current period; default the next period's first day."}}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			o, err := svc.EndOverride(req.Context(), req.Principal, req.PathValue("entityId"), req.PathValue("skuId"), req.URL.Query().Get("effectiveFrom"))
			return httpapi.Response{Data: o}, err
		})
}
