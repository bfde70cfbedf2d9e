# The README's two commands live here:
#   make demo   install what is needed, build, and run amc on the examples
#   make test   install what is needed, build, and run the whole test suite
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo clean format bench

all: build

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

bench: build
	./bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
