# The two commands of the README, and the chores around them.
#   make run    install what is missing, build, run the main job
#   make test   install what is missing, build, run the whole test suite
#   make asan   the same suite in the ASan+UBSan build (slow tests excluded)
#   make bench  build and run the benchmarks against their references
#   make image  build the twig container image (docs/deploy.md; IMAGE=twig:latest)
#   make test-deploy  the deploy tests (label deploy: Docker image, daemon fixture)
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
IMAGE      ?= twig:latest

.PHONY: all deps deps-bench deps-deploy build build-asan run test asan bench image test-deploy \
	clean

all: build

deps:
	@sh deploy/install-deps.sh test

deps-bench:
	@sh deploy/install-deps.sh bench

deps-deploy:
	@sh deploy/install-deps.sh deploy

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTWIG_SANITIZE=ON \
	    -DTWIG_BUILD_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	@sh deploy/run-local.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE deploy

asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j $(JOBS) -LE 'slow|deploy'

bench: deps-bench build
	@sh bench/run-all.sh $(BUILD)

# the image on the daemon that answers, or on one started for it (left running: its socket is
# in $(BUILD)/dockerd/docker-host; stop it with sh deploy/image/dockerd.sh stop $(BUILD)/dockerd)
image: deps-deploy build
	@sh deploy/image/dockerd.sh start $(BUILD)/dockerd
	@DOCKER_HOST=$$(cat $(BUILD)/dockerd/docker-host) sh deploy/image/build.sh $(BUILD) $(IMAGE)

test-deploy: deps-deploy build
	@cd $(BUILD) && ctest --output-on-failure -L deploy

clean:
	@if [ -d $(BUILD)/dockerd ]; then sh deploy/image/dockerd.sh stop $(BUILD)/dockerd; fi
	rm -rf $(BUILD) $(ASAN_BUILD)
