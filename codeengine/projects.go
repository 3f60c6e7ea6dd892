package codeengine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Project is a Code Engine project.
type Project struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Region          string `json:"region"`
	ResourceGroupID string `json:"resource_group_id"`
	Status          string `json:"status"`
	CRN             string `json:"crn"`
}

type pageRef struct {
	Href  string `json:"href"`
	Start string `json:"start"`
}

type projectList struct {
	Projects []Project `json:"projects"`
	Next     *pageRef  `json:"next"`
}

// Projects lists every project of the region, following next.start.
func (c *Client) Projects(ctx context.Context) ([]Project, error) {
	var all []Project
	err := eachPage("list projects", func(start string) (*pageRef, error) {
		var page projectList
		q := url.Values{"limit": {"100"}}
		if start != "" {
			q.Set("start", start)
		}
		if _, err := c.call(ctx, "list projects", request{svc: c.ce, method: http.MethodGet, path: "/projects", query: q}, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Projects...)
		return page.Next, nil
	})
	return all, err
}

// eachPage calls fetch with the start token of each page until no next is answered.
func eachPage(op string, fetch func(start string) (*pageRef, error)) error {
	start := ""
	for i := 0; ; i++ {
		next, err := fetch(start)
		if err != nil {
			return err
		}
		if next == nil || next.Start == "" {
			return nil
		}
		if next.Start == start || i > 10000 {
			return fmt.Errorf("%s: the server's pagination does not advance", op)
		}
		start = next.Start
	}
}

var projectNameRE = regexp.MustCompile(`^[a-zA-Z0-9\-._: ]{1,128}$`)

// FindProject resolves a project name or ID in the client's region.
func (c *Client) FindProject(ctx context.Context, nameOrID string) (Project, error) {
	if nameOrID == "" {
		return Project{}, ErrNoProject
	}
	all, err := c.Projects(ctx)
	if err != nil {
		return Project{}, err
	}
	var byName []Project
	for _, p := range all {
		if p.ID == nameOrID {
			return p, nil
		}
		if p.Name == nameOrID {
			byName = append(byName, p)
		}
	}
	switch len(byName) {
	case 0:
		return Project{}, &NoProjectError{Name: nameOrID, Region: c.cfg.Region}
	case 1:
		return byName[0], nil
	}
	var ids []string
	for _, p := range byName {
		ids = append(ids, p.ID)
	}
	return Project{}, fmt.Errorf("%d Code Engine projects are named %q in %s (%s): give -project the ID", len(byName), nameOrID, c.cfg.Region, strings.Join(ids, ", "))
}

// ErrNoProject says how to name the target project.
var ErrNoProject = errors.New("no Code Engine project given: use -project NAME or set KAR_CE_PROJECT")

// NoProjectError is a project that does not exist in the region.
type NoProjectError struct{ Name, Region string }

func (e *NoProjectError) Error() string {
	return fmt.Sprintf("no Code Engine project %q in region %s: create it with `kar ce project create -project %s`, or set IBMCLOUD_REGION to its region", e.Name, e.Region, e.Name)
}

// ActiveProject resolves a project and checks it can take secrets and apps.
func (c *Client) ActiveProject(ctx context.Context, nameOrID string) (Project, error) {
	p, err := c.FindProject(ctx, nameOrID)
	if err != nil {
		return p, err
	}
	if p.Status != "active" {
		return p, fmt.Errorf("Code Engine project %q is %s, not active: wait for `kar ce project create -project %s` to finish", p.Name, p.Status, p.Name)
	}
	return p, nil
}

// CreateProject creates the project (or finds it when it already exists)
// and, unless wait is false, waits until it is active.
func (c *Client) CreateProject(ctx context.Context, name, resourceGroupID string, wait bool) (Project, error) {
	if !projectNameRE.MatchString(name) {
		return Project{}, fmt.Errorf("project name %q: use 1 to 128 letters, digits, spaces and - . _ :", name)
	}
	p, err := c.FindProject(ctx, name)
	var nf *NoProjectError
	switch {
	case err == nil:
		c.progress("project %s already exists (%s)", p.Name, p.Status)
	case errors.As(err, &nf):
		body := map[string]any{"name": name}
		if resourceGroupID != "" {
			body["resource_group_id"] = resourceGroupID
		}
		if _, err := c.call(ctx, "create project "+name, request{svc: c.ce, method: http.MethodPost, path: "/projects", body: body}, &p); err != nil {
			return Project{}, err
		}
		c.progress("project %s created (%s), id %s", p.Name, p.Status, p.ID)
	default:
		return Project{}, err
	}
	if !wait {
		return p, nil
	}
	return c.WaitProject(ctx, p)
}

// WaitProject polls the project until it is active.
func (c *Client) WaitProject(ctx context.Context, p Project) (Project, error) {
	begin := time.Now()
	for {
		switch p.Status {
		case "active":
			c.progress("project %s is active (%s)", p.Name, since(begin))
			return p, nil
		case "creating", "preparing", "":
			c.progress("project %s: %s (%s)", p.Name, p.Status, since(begin))
		default:
			return p, fmt.Errorf("Code Engine project %q is %s, it will not become active", p.Name, p.Status)
		}
		if err := c.sleep(ctx); err != nil {
			return p, fmt.Errorf("gave up waiting for project %q to become active (last status %s): %w", p.Name, p.Status, err)
		}
		var err error
		p, err = c.getProject(ctx, p.ID)
		if err != nil {
			return p, err
		}
	}
}

func (c *Client) getProject(ctx context.Context, id string) (Project, error) {
	var p Project
	_, err := c.call(ctx, "get project "+id, request{svc: c.ce, method: http.MethodGet, path: "/projects/{id}", params: map[string]string{"id": id}}, &p)
	return p, err
}

// DeleteProject deletes the project (Code Engine keeps it restorable for 7 days).
func (c *Client) DeleteProject(ctx context.Context, nameOrID string) (Project, error) {
	p, err := c.FindProject(ctx, nameOrID)
	if err != nil {
		return p, err
	}
	_, err = c.call(ctx, "delete project "+p.Name, request{svc: c.ce, method: http.MethodDelete, path: "/projects/{id}", params: map[string]string{"id": p.ID}}, nil)
	return p, err
}

func since(t time.Time) string { return time.Since(t).Round(time.Second).String() }
