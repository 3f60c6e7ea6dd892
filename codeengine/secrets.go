package codeengine

import (
	"context"
	"net/http"
)

// Secret is a Code Engine secret; Data is never printed.
type Secret struct {
	Name       string            `json:"name"`
	Format     string            `json:"format"`
	Data       map[string]string `json:"data,omitempty"`
	EntityTag  string            `json:"entity_tag"`
	ResourceID string            `json:"id"`
}

func secretPath(p Project, name string) (string, map[string]string) {
	return "/projects/{project_id}/secrets/{name}", map[string]string{"project_id": p.ID, "name": name}
}

// GetSecret reads a secret and its ETag.
func (c *Client) GetSecret(ctx context.Context, p Project, name string) (Secret, string, error) {
	var s Secret
	path, params := secretPath(p, name)
	resp, err := c.call(ctx, "get secret "+name, request{svc: c.ce, method: http.MethodGet, path: path, params: params}, &s)
	if err != nil {
		return s, "", err
	}
	etag := resp.Headers.Get("ETag")
	if etag == "" {
		etag = s.EntityTag
	}
	return s, etag, nil
}

// PutGenericSecret creates the generic secret, or replaces its data
// (PUT with If-Match) when it exists. It reports whether it was created.
func (c *Client) PutGenericSecret(ctx context.Context, p Project, name string, data map[string]string) (created bool, err error) {
	_, etag, err := c.GetSecret(ctx, p, name)
	switch {
	case IsNotFound(err):
		_, err := c.call(ctx, "create secret "+name, request{
			svc: c.ce, method: http.MethodPost, path: "/projects/{project_id}/secrets",
			params: map[string]string{"project_id": p.ID},
			body:   map[string]any{"name": name, "format": "generic", "data": data},
		}, nil)
		return err == nil, err
	case err != nil:
		return false, err
	}
	path, params := secretPath(p, name)
	_, err = c.call(ctx, "replace secret "+name, request{
		svc: c.ce, method: http.MethodPut, path: path, params: params,
		header: map[string]string{"If-Match": etag},
		body:   map[string]any{"format": "generic", "data": data},
	}, nil)
	return false, err
}

// DeleteSecret deletes a secret; found is false when it did not exist.
func (c *Client) DeleteSecret(ctx context.Context, p Project, name string) (found bool, err error) {
	path, params := secretPath(p, name)
	_, err = c.call(ctx, "delete secret "+name, request{svc: c.ce, method: http.MethodDelete, path: path, params: params}, nil)
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
