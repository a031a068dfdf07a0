# Parley's front door. Every target installs what it is missing first (scripts/deps.sh).
#   make run      build and serve on http://localhost:3000
#   make test     unit + integration tests, then again under ASan+UBSan
#   make fuzz     each libFuzzer target for FUZZ_TIME seconds (default 30)
#   make bench    benchmarks
#   make install  the server, libparley (static + shared), headers, parley.pc under
#                 PREFIX (/usr/local), staged under DESTDIR when set
#   make format   clang-format in place;  make lint   clang-tidy + cppcheck
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 30
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=
PREFIX     ?= /usr/local
# Tests are configured only for `make test` (and lint, which reads what the build
# compiles): `make run` must not need a test package (scripts/check-deps.sh).
TESTS      ?= OFF
C_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps test-deps bench-deps build build-asan run test fuzz bench install format lint clean

all: build

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

bench-deps:
	@scripts/deps.sh bench

build: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_TESTS=$(TESTS) \
	  -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPARLEY_SANITIZE=ON \
	  -DPARLEY_TESTS=$(TESTS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The chat service with development logins on, at http://localhost:3000.
run: build
	$(BUILD)/parley --dev-login $(ARGS)

test: TESTS = ON
test: test-deps build build-asan
	@echo "== tests (release build)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)
	@echo "== tests (ASan + UBSan build)"
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

fuzz: test-deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPARLEY_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@set -e; for f in $(FUZZ_BUILD)/*_fuzz; do \
	  name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name%_fuzz}; \
	  work=$(FUZZ_BUILD)/corpus/$${name%_fuzz}; mkdir -p $$work; \
	  echo "== fuzz $$name for $(FUZZ_TIME)s"; \
	  rc=0; $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 -timeout=10 $$work $$corpus \
	    > $$work.log 2>&1 || rc=$$?; \
	  tail -n 12 $$work.log; \
	  if [ $$rc -ne 0 ]; then echo "== $$name failed ($$rc): $$work.log"; exit $$rc; fi; \
	done

bench: bench-deps build
	@scripts/bench-memory.sh sizes
	@scripts/bench.sh
	@scripts/bench-workers.sh
	@scripts/bench-redis.sh
	@scripts/bench-redis-modes.sh
	@scripts/bench-tls.sh
	@scripts/bench-deflate.sh
	@scripts/bench-members.sh

install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

format:
	clang-format -i $(C_FILES)

# clang-tidy sees what the build compiles (fuzz targets are built by `make fuzz` only);
# cppcheck reads every C file.
TIDY_FILES = $(filter src/%.c examples/%.c tests/servers/%.c tools/%.c bench/%.c,$(C_FILES))
lint: TESTS = ON
lint: test-deps build
	@scripts/deps.sh lint
	clang-format --dry-run -Werror $(C_FILES)
	echo $(TIDY_FILES) | xargs -n 4 -P $(JOBS) clang-tidy -p $(BUILD) --quiet
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -I include -I src src examples tests tools bench

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
