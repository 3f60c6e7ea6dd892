# kar: build, test and container images.
#
#   make build     the binaries into bin/ (kar, kar-cloud, kar-dev, kar-injector, kar-scaler), as the images build them
#   make test      every test (scripts/test.sh)
#   make docker    build and push the images to $(REGISTRY) (default the
#                  local registry of scripts/start-local-registry.sh):
#                    $(REGISTRY)/kar/kar, $(REGISTRY)/kar/kar-injector, $(REGISTRY)/kar/kar-scaler,
#                    $(REGISTRY)/kar/kar-dev,
#                    $(REGISTRY)/kar/kar-js, $(REGISTRY)/kar/kar-go,
#                    $(REGISTRY)/kar/examples/<example>
#   make docker-build   the same images, without pushing

REGISTRY ?= localhost:5000
REPO     ?= $(REGISTRY)/kar
TAG      ?= latest
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER   ?= docker
BUILD    := $(DOCKER) build --build-arg VERSION=$(VERSION)

# Examples with a package.json are Node.js; those with Go files are Go.
EXAMPLES_JS := $(patsubst examples/%/package.json,%,$(wildcard examples/*/package.json))
EXAMPLES_GO := $(filter-out $(EXAMPLES_JS),$(sort $(foreach f,$(wildcard examples/*/*.go examples/*/*/*.go),$(word 2,$(subst /, ,$(f))))))

IMAGES := kar kar-injector kar-scaler kar-dev kar-js kar-go $(addprefix examples/,$(EXAMPLES_JS) $(EXAMPLES_GO))

.PHONY: build test docker docker-build docker-push docker-kar docker-injector docker-scaler docker-dev docker-bases docker-examples

# The binaries as the images build them (scripts/build.sh says how).
build:
	VERSION=$(VERSION) scripts/build.sh

test:
	scripts/test.sh

docker: docker-build docker-push

docker-build: docker-kar docker-injector docker-scaler docker-dev docker-bases docker-examples

docker-kar:
	$(BUILD) --target kar -t $(REPO)/kar:$(TAG) .

docker-injector:
	$(BUILD) --target kar-injector -t $(REPO)/kar-injector:$(TAG) .

docker-scaler:
	$(BUILD) --target kar-scaler -t $(REPO)/kar-scaler:$(TAG) .

docker-dev:
	$(BUILD) --target kar-dev -t $(REPO)/kar-dev:$(TAG) .

docker-bases:
	$(BUILD) --target kar-js -t $(REPO)/kar-js:$(TAG) .
	$(BUILD) --target kar-go -t $(REPO)/kar-go:$(TAG) .

docker-examples:
	$(foreach e,$(EXAMPLES_JS),$(BUILD) --target example-js --build-arg EXAMPLE=$(e) -t $(REPO)/examples/$(e):$(TAG) . &&) true
	$(foreach e,$(EXAMPLES_GO),$(BUILD) --target example-go --build-arg EXAMPLE=$(e) -t $(REPO)/examples/$(e):$(TAG) . &&) true

docker-push:
	$(foreach i,$(IMAGES),$(DOCKER) push $(REPO)/$(i):$(TAG) &&) true
