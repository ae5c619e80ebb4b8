# partnerd — see README.md.  `make demo` and `make check` install or verify
# their own dependencies (scripts/deps.sh).
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
CATALOGDIR ?= /usr/lib/systemd/catalog
DESTDIR    ?=

CC      ?= cc
BUILD   ?= build
PKG_CONFIG ?= pkg-config
SAN     ?=
OPT     ?= -O2

RUNTIME_PKGS := libcurl jansson libuv libsystemd
TEST_PKGS    := cmocka libmicrohttpd

pkgcflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkglibs   = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DPARTNERD_VERSION='"$(VERSION)"' \
            -DPARTNERD_SYSCONFDIR='"$(SYSCONFDIR)"' \
            $(WARN) $(CFLAGS) -Ilib $(call pkgcflags,$(RUNTIME_PKGS))
ifneq ($(SAN),)
ALL_CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS    += -fsanitize=$(SAN)
endif
LIBS      := $(call pkglibs,$(RUNTIME_PKGS)) -lm
TEST_LIBS := $(call pkglibs,$(TEST_PKGS)) $(LIBS)

LIB_SRC    := $(sort $(wildcard lib/*.c))
# The default mail templates, compiled in: every file of config/templates
# (the one source) becomes an entry of mail_builtin_templates[] (lib/mail.h).
TEMPLATE_FILES := $(sort $(wildcard config/templates/*))
EMBED      := $(BUILD)/tools/embed-templates
GEN_TEMPLATES := $(BUILD)/gen/templates.c
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o) $(GEN_TEMPLATES:.c=.o)
DAEMON_SRC := $(sort $(wildcard daemon/*.c))
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
FAKE_SRC   := $(sort $(wildcard tests/fakes/*.c))
FAKE_OBJ   := $(FAKE_SRC:%.c=$(BUILD)/%.o)
HARNESS_SRC := $(sort $(wildcard tests/harness/*.c))
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
INTEG_SRC  := $(sort $(wildcard tests/integration/test_*.c))
INTEG_BIN  := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 4

PARTNERD := $(BUILD)/partnerd
FAKE     := $(BUILD)/fakeplatform
LIBA     := $(BUILD)/libpartnerd.a

.PHONY: all deps check test unit integration check-asan check-valgrind check-systemd demo bench \
        install uninstall clean tests deb check-deb check-bare check-html fuzz fuzz-smoke fuzz-bins

all: $(PARTNERD)

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/harness -MMD -MP -c -o $@ $<

# Plain flags: a build tool, run on this machine (also in sanitizer/fuzz builds).
$(EMBED): scripts/embed-templates.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -o $@ $<

# The directory is a prerequisite too: adding or removing a file regenerates.
$(GEN_TEMPLATES): $(EMBED) $(TEMPLATE_FILES) config/templates
	@mkdir -p $(dir $@)
	$(EMBED) $@ $(TEMPLATE_FILES)

$(GEN_TEMPLATES:.c=.o): $(GEN_TEMPLATES) lib/mail.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(PARTNERD): $(DAEMON_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(DAEMON_OBJ) $(LIBA) $(LIBS)

$(FAKE): $(FAKE_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(FAKE_OBJ) $(LIBA) $(TEST_LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(HARNESS_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(LIBA) $(TEST_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(HARNESS_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(LIBA) $(TEST_LIBS)

# LD_PRELOAD shim recording fsync/rename order (test_durability); never
# sanitized: it is preloaded into partnerd whatever its build.
SHIM := $(BUILD)/tests/tools/fsynctrace.so
$(SHIM): tests/tools/fsynctrace.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -fPIC -shared -o $@ $< -ldl

tests: $(PARTNERD) $(FAKE) $(UNIT_BIN) $(INTEG_BIN) $(SHIM)

# libFuzzer targets (tests/fuzz/README.md).  Built by tests/fuzz/run.sh
# with clang in build/fuzz: BUILD=build/fuzz SAN=address,undefined and
# -fsanitize=fuzzer-no-link in CFLAGS; linked here with -fsanitize=fuzzer.
$(BUILD)/tests/fuzz/%: $(BUILD)/tests/fuzz/%.o $(LIBA)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(LIBA) $(LIBS)

fuzz-bins: $(FUZZ_BIN)
.PRECIOUS: $(BUILD)/tests/fuzz/%.o

fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) MAKE="$(MAKE)" tests/fuzz/run.sh fuzz $(FUZZ_TARGETS)

fuzz-smoke:
	@FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) MAKE="$(MAKE)" tests/fuzz/run.sh smoke $(FUZZ_TARGETS)

# Environment every test gets: where the binaries and sources are.
TEST_ENV = PARTNERD_BIN=$(abspath $(PARTNERD)) FAKEPLATFORM_BIN=$(abspath $(FAKE)) \
           TEST_SRCDIR=$(abspath .) TEST_BUILDDIR=$(abspath $(BUILD)) \
           SHARED_DIR=$(abspath ../shared)

unit: tests
	@$(TEST_ENV) scripts/run-tests.sh unit $(UNIT_BIN)

integration: tests
	@$(TEST_ENV) scripts/run-tests.sh integration $(INTEG_BIN)

test: unit integration

check-asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=address,undefined OPT=-O1 CC=$(CC) test

check-valgrind: tests
	@$(TEST_ENV) PARTNERD_WRAPPER="valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99" \
	  VALGRIND=1 scripts/run-tests.sh valgrind $(UNIT_BIN) $(INTEG_BIN)

# The unit, catalog and man page checks, and partnerd under a real systemd
# in a container (nspawn-test.sh: root only).  Exit 77 is a skip: the
# script says why.
SYSTEMD_CHECKS := check-unit check-catalog check-man nspawn-test

check-systemd: $(PARTNERD) $(FAKE)
	@passed=0; skipped=0; failed=""; \
	for t in $(SYSTEMD_CHECKS); do \
	  echo "== systemd: $$t"; \
	  $(TEST_ENV) sh tests/systemd/$$t.sh; rc=$$?; \
	  case $$rc in \
	  0) passed=$$((passed + 1)) ;; \
	  77) skipped=$$((skipped + 1)) ;; \
	  *) failed="$$failed $$t" ;; \
	  esac; \
	done; \
	[ -z "$$failed" ] || echo "systemd: failed:$$failed"; \
	nfailed=$$(echo $$failed | wc -w); \
	echo "systemd: $$passed passed, $$nfailed failed, $$skipped skipped"; \
	[ -z "$${CHECK_TALLY:-}" ] || echo "systemd $$passed $$nfailed $$skipped" >> "$$CHECK_TALLY"; \
	[ -z "$$failed" ]

# Every suite appends "SUITE PASSED FAILED SKIPPED" to CHECK_TALLY; the
# closing line sums them, so a skipped test is never reported as passed.
CHECK_TALLY_FILE := $(abspath build)/check-tally

check: deps
	@mkdir -p build && rm -f $(CHECK_TALLY_FILE)
	@CHECK_TALLY=$(CHECK_TALLY_FILE) $(MAKE) --no-print-directory test
	@CHECK_TALLY=$(CHECK_TALLY_FILE) $(MAKE) --no-print-directory check-systemd
	@CHECK_TALLY=$(CHECK_TALLY_FILE) $(MAKE) --no-print-directory check-asan
	@CHECK_TALLY=$(CHECK_TALLY_FILE) $(MAKE) --no-print-directory check-valgrind
	@$(MAKE) --no-print-directory fuzz-smoke
	@awk '{ p += $$2; f += $$3; s += $$4; if ($$4) k = k " " $$1 "(" $$4 ")" } \
	  END { printf "make check: all suites passed: %d passed, %d failed, %d skipped%s\n", p, f, s, \
	        s ? " (skipped in:" k ")" : "" }' $(CHECK_TALLY_FILE)

demo: deps
	@$(MAKE) --no-print-directory $(PARTNERD) $(FAKE)
	@PARTNERD_BIN=$(abspath $(PARTNERD)) FAKEPLATFORM_BIN=$(abspath $(FAKE)) scripts/demo.sh

# check-html (not part of check): renders every mail kind's HTML part in
# headless Chromium to build/html/*.png and checks the DOM (docs/check-html.md).
$(BUILD)/tests/html/render_mails: $(BUILD)/tests/html/render_mails.o $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBA) $(LIBS)

check-html: $(BUILD)/tests/html/render_mails
	@scripts/deps.sh chromium
	@/usr/bin/python3 tests/html/check_html.py --render $(abspath $(BUILD)/tests/html/render_mails) \
	  --templates $(abspath config/templates) --out $(abspath build/html)

# bench-spawn runs partnerd for the benchmark and reports its wait4() rusage.
$(BUILD)/bench-spawn: bench/spawn.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -o $@ $<

# bench-cluster: takeover times of lib/cluster on a real etcd (exit 77: no etcd).
$(BUILD)/bench-cluster: $(BUILD)/bench/cluster_takeover.o $(HARNESS_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(LIBA) $(TEST_LIBS)

# bench-cluster-daemons: takeover times and etcd calls per cycle with real
# partnerd daemons (tests/harness/pdcluster.h; exit 77: no etcd).
$(BUILD)/bench-cluster-daemons: $(BUILD)/bench/cluster_daemons.o $(HARNESS_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $< $(HARNESS_OBJ) $(LIBA) $(TEST_LIBS)

bench: deps
	@$(MAKE) --no-print-directory $(PARTNERD) $(FAKE) $(BUILD)/bench-spawn $(BUILD)/bench-cluster \
	  $(BUILD)/bench-cluster-daemons
	@PARTNERD_BIN=$(abspath $(PARTNERD)) FAKEPLATFORM_BIN=$(abspath $(FAKE)) \
	  BENCH_SPAWN_BIN=$(abspath $(BUILD)/bench-spawn) bench/run.sh
	@$(BUILD)/bench-cluster; r=$$?; [ $$r = 0 ] || [ $$r = 77 ]
	@$(TEST_ENV) $(BUILD)/bench-cluster-daemons; r=$$?; [ $$r = 0 ] || [ $$r = 77 ]

install: $(PARTNERD)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/partnerd \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(CATALOGDIR)
	install -m 0755 $(PARTNERD) $(DESTDIR)$(SBINDIR)/partnerd
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/partnerd/partnerd.conf ]; then \
	  echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/partnerd/partnerd.conf"; \
	else install -m 0644 config/partnerd.conf.example $(DESTDIR)$(SYSCONFDIR)/partnerd/partnerd.conf; fi
	sed -e 's|/usr/sbin/partnerd|$(SBINDIR)/partnerd|' -e 's|/etc/partnerd/|$(SYSCONFDIR)/partnerd/|' \
	  systemd/partnerd.service > $(DESTDIR)$(UNITDIR)/partnerd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/partnerd.service
	install -m 0644 systemd/partnerd.catalog $(DESTDIR)$(CATALOGDIR)/partnerd.catalog
	install -m 0644 man/partnerd.8 $(DESTDIR)$(MANDIR)/man8/partnerd.8
	install -m 0644 man/partnerd.conf.5 $(DESTDIR)$(MANDIR)/man5/partnerd.conf.5

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/partnerd $(DESTDIR)$(UNITDIR)/partnerd.service \
	  $(DESTDIR)$(CATALOGDIR)/partnerd.catalog $(DESTDIR)$(MANDIR)/man8/partnerd.8 \
	  $(DESTDIR)$(MANDIR)/man5/partnerd.conf.5
	rm -rf $(DESTDIR)$(PREFIX)/share/partnerd   # older versions installed the templates there

# The Debian package (debian/README.source): build/deb/partnerd_<version>_<arch>.deb,
# lintian-clean.  check-deb builds it and installs it on a booted Debian 12 container; not
# part of `make check` (needs root, debootstrap and systemd-nspawn).
deb:
	@scripts/build-deb.sh

check-deb:
	@tests/deb/check-deb.sh

# check-bare (not part of check): the README's `make demo` and `make check` in
# a debootstrapped Debian 12 with only build-essential and git, from a clean
# clone of HEAD (tests/bare/check-bare.sh; needs root).  Slow: run it with nice.
check-bare:
	@tests/bare/check-bare.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(FAKE_OBJ:.o=.d) $(HARNESS_OBJ:.o=.d) \
         $(UNIT_BIN:=.d) $(INTEG_BIN:=.d) $(FUZZ_BIN:=.d) $(BUILD)/bench/cluster_takeover.d \
         $(BUILD)/bench/cluster_daemons.d
