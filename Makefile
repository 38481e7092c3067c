# campus-provision — the commands a newcomer and CI run.
# `make demo` and `make test` are the two to know; see README.md.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SPEC   ?= inventories/seoul/campus.yml
PYTEST_ARGS ?=
# make bench MITOGEN=DIR: also measure mitogen, from a `pip install --target DIR mitogen`.
MITOGEN ?=

# Host packages the lab needs (namespaces, containers, VMs, image building).
LAB_PACKAGES := debootstrap systemd-container iproute2 netcat-openbsd openssh-client \
	qemu-system-x86 qemu-utils grub-pc-bin grub-common dosfstools fdisk e2fsprogs chromium \
	apt-utils gpg gpgv cryptsetup-bin

.PHONY: help setup lab-deps test test-fast test-lab lint fmt bench demo demo-campus demo-vm demo-clean render clean lab-down lab-up

help:
	@echo "make demo       the example campus in the lab: publish its bundle, provision, verify, report;"
	@echo "                then a QEMU PC: dataset volumes created, loaded, key rotated, verified"
	@echo "make demo-clean take down whatever a demo left running"
	@echo "make test       every test: unit tests, then the lab tests (root; real hosts)"
	@echo "make test-fast  unit tests only, for quick iteration"
	@echo "make lint       ruff, mypy --strict, yamllint, ansible-lint"
	@echo "make bench      render 10,000 PCs; bundle; load a 2 GiB file (controller memory);"
	@echo "                verify over SSH vs --force-ansible;"
	@echo "                provision tuned vs stock ansible-core; rotate a key on 1 and 2 VMs (root);"
	@echo "                MITOGEN=DIR also measures mitogen (DIR from 'pip install --target DIR mitogen')"
	@echo "make setup      build $(VENV) with campus-provision and its dev tools"

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

lab-deps:
	@missing=$$(for p in $(LAB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing lab packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# Every lab container runs systemd, which takes several inotify instances: 128 (the
	@# default) runs out with two labs up ("Too many open files", no SSH). Runtime only.
	@if [ "$$(sysctl -n fs.inotify.max_user_instances)" -lt 1024 ]; then \
		sysctl -q -w fs.inotify.max_user_instances=1024; fi

# Unit tests in parallel, then the lab tests in two streams side by side, one per core:
# the VM tests (each a QEMU PC under TCG, which keeps one core busy) and the container
# tests, which also take the short VM tests (marked vm_short) so that neither stream waits
# long on the other. Each lab has its own prefix, and the image and bundle caches are
# locked, so the streams never share a namespace or a half-built file. VM-stream lines are
# marked "[vm]"; each stream ends with its slowest tests.
test: setup lab-deps
	$(BIN)/pytest -n 2 -m "not lab" $(PYTEST_ARGS)
	$(MAKE) test-lab

test-lab: setup
	@export PATH="$(CURDIR)/$(BIN):$$PATH"; rcfile=$$(mktemp /tmp/campus-vm-tests.XXXXXX); \
	{ $(BIN)/pytest -p no:cacheprovider -m "lab and vm and not vm_short" -v --durations=30 \
	    $(PYTEST_ARGS) 2>&1; echo $$? >$$rcfile; } | sed -u 's/^/[vm] /' & vm=$$!; \
	$(BIN)/pytest -m "lab and (not vm or vm_short)" -v --durations=30 $(PYTEST_ARGS); rc=$$?; \
	wait $$vm; vmrc=$$(cat $$rcfile); rm -f $$rcfile; \
	echo "lab tests: containers exit $$rc, VMs exit $$vmrc"; \
	[ $$rc -eq 0 ] && [ "$$vmrc" = 0 ]

test-fast: setup
	$(BIN)/pytest -n 2 -m "not lab" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check campus_provision tests bench roles/campus_data_volume/library
	$(BIN)/ruff format --check campus_provision tests bench roles/campus_data_volume/library
	$(BIN)/mypy
	$(BIN)/mypy --strict roles/campus_data_volume/library
	$(BIN)/yamllint --strict .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint --profile production

fmt: setup
	$(BIN)/ruff format campus_provision tests bench
	$(BIN)/ruff check --fix campus_provision tests bench

bench: setup lab-deps
	$(BIN)/python bench/bench_render.py
	$(BIN)/python bench/bench_bundle.py
	$(BIN)/python bench/bench_load.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/bench_verify.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/bench_provision.py --profile \
		$(if $(MITOGEN),--mitogen --mitogen-path $(MITOGEN))
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/bench_rotate.py

render: setup
	$(BIN)/campus-provision render $(SPEC)

LAB_PER_SITE ?= 2
LAB_STATE   ?= $(or $(CAMPUS_LAB_STATE),/var/lib/campus-provision/lab)
DEMO_EVIDENCE ?= evidence/demo
DEMO_VM_PREFIX ?= cpm
DEMO_VM_PC ?= sgm-a01
DEMO_DATASET ?= card-spending-2025
VOL_CONTROLS := CP-VOL-01,CP-VOL-02,CP-VOL-03
# The lab's keystore: its signing key signs the evidence, its volume keys open the VM's
# volumes (found by the Ansible lookup through the same two variables).
DEMO_KEYS = CAMPUS_KEYS_DIR=$(LAB_STATE)/keys CAMPUS_KEYSTORE_PASSPHRASE_FILE=$(LAB_STATE)/keys/passphrase
DEMO_VERIFY = $(DEMO_KEYS) $(BIN)/campus-provision verify $(SPEC) --lab \
	--passphrase-file $(LAB_STATE)/keys/passphrase
DEMO_CP = $(DEMO_KEYS) $(BIN)/campus-provision

# The whole story, in two labs one after the other: the campus on containers, then one PC
# as a VM (a kernel of its own) with its dataset volumes and a key rotation.
demo: demo-campus demo-vm
	@echo "== done: signed evidence and records (campus-provision report verify DIR checks each)"
	@for d in $(DEMO_EVIDENCE) $(DEMO_EVIDENCE)-vm $(DEMO_EVIDENCE)-volumes-*; do \
		echo "   $$d/report.html"; done

# The lab plays the campus: two PCs per site and every service host; the full analyst
# bundle is built (once, cached) and published on the lab mirrors; the PCs are provisioned
# and verified, the evidence is signed with the lab's own key, and the lab is taken down.
demo-campus: setup lab-deps
	$(BIN)/campus-provision validate $(SPEC)
	$(BIN)/campus-provision spec show $(SPEC)
	$(BIN)/campus-provision render $(SPEC)
	$(BIN)/campus-provision render $(SPEC) --check
	$(BIN)/campus-provision lab up $(SPEC) --per-site $(LAB_PER_SITE)
	$(BIN)/campus-provision lab status
	rm -rf $(DEMO_EVIDENCE) $(DEMO_EVIDENCE)-bare
	@echo "== verify on the bare PCs: the controls must fail here, each saying why"
	@if $(DEMO_VERIFY) --out $(DEMO_EVIDENCE)-bare; then \
		echo "the bare PCs passed verify: the checks prove nothing"; \
		$(BIN)/campus-provision lab down; exit 1; fi
	@echo "== provision: mirrors, services, then the PCs"
	$(BIN)/campus-provision provision $(SPEC) --lab || { $(BIN)/campus-provision lab down; exit 1; }
	@echo "== verify again: every control passes (or does not apply to a container)"
	$(DEMO_VERIFY) --out $(DEMO_EVIDENCE) || { $(BIN)/campus-provision lab down; exit 1; }
	$(BIN)/campus-provision report verify $(DEMO_EVIDENCE) --pubkey $(LAB_STATE)/keys/signing.pub
	$(BIN)/campus-provision lab down
	@echo "report: $(DEMO_EVIDENCE)/report.html (signed; campus-provision report verify checks it)"

# One PC as a QEMU VM (dm-crypt needs its own kernel): its VOL controls fail bare; the
# apt client points it at the campus mirror and the accounts role makes the analysts'
# groups (the volumes' readers); 'volumes create' makes a LUKS2 volume per
# dataset (keys in the lab keystore); a sample dataset is loaded, checked by SHA-256; the
# VOL controls pass; its key is rotated; they pass again; the records are signed.
demo-vm: setup lab-deps
	@set -e; vm="--lab --prefix $(DEMO_VM_PREFIX) --limit $(DEMO_VM_PC)"; \
	ev=$(DEMO_EVIDENCE); sample=$$ev-sample; \
	trap '$(BIN)/campus-provision lab down --prefix $(DEMO_VM_PREFIX) >/dev/null' EXIT; \
	rm -rf $$ev-vm $$ev-vm-* $$ev-volumes-* $$sample; \
	$(BIN)/campus-provision lab up $(SPEC) --driver qemu --per-site 1 --site sangam \
		--prefix $(DEMO_VM_PREFIX); \
	echo "== verify the VM's volume controls bare: they must fail"; \
	if $(DEMO_VERIFY) $$vm --controls $(VOL_CONTROLS) --out $$ev-vm-bare; then \
		echo "the bare VM passed the VOL checks: they prove nothing"; exit 1; fi; \
	echo "== the campus mirror as its only package source, and its accounts (campus_apt_client, campus_accounts)"; \
	$(BIN)/campus-provision provision $(SPEC) $$vm --tags campus_apt_client,campus_accounts; \
	echo "== volumes create: a keystore key per dataset, then LUKS2 volumes (campus_data_volume)"; \
	$(DEMO_CP) volumes create $(SPEC) $$vm --out $$ev-volumes-create; \
	mkdir -p $$sample; printf 'month,district,amount\n2025-01,Mapo,1000\n' > $$sample/spending.csv; \
	(cd $$sample && sha256sum spending.csv > SHA256SUMS); \
	echo "== volumes load: the sample dataset, checked against its SHA256SUMS"; \
	$(DEMO_CP) volumes load $(SPEC) $(DEMO_DATASET) --from $$sample $$vm --out $$ev-volumes-load; \
	$(DEMO_VERIFY) $$vm --controls $(VOL_CONTROLS) --out $$ev-vm-volumes; \
	echo "== volumes rotate-key: new key added, proven, installed, old slot killed"; \
	$(DEMO_CP) volumes rotate-key $(SPEC) $(DEMO_DATASET) $$vm --out $$ev-volumes-rotate; \
	$(DEMO_CP) volumes status $(SPEC) $$vm; \
	$(DEMO_VERIFY) $$vm --controls $(VOL_CONTROLS) --out $$ev-vm; \
	for d in $$ev-vm $$ev-volumes-create $$ev-volumes-load $$ev-volumes-rotate; do \
		$(BIN)/campus-provision report verify $$d --pubkey $(LAB_STATE)/keys/signing.pub; done

# Whatever a demo left running (after Ctrl-C, say): both labs down, nothing left behind.
demo-clean: setup
	$(BIN)/campus-provision lab down
	$(BIN)/campus-provision lab down --prefix $(DEMO_VM_PREFIX)
	rm -rf $(DEMO_EVIDENCE) $(DEMO_EVIDENCE)-*

lab-up: setup lab-deps
	$(BIN)/campus-provision lab up $(SPEC) --per-site $(LAB_PER_SITE)

lab-down: setup
	$(BIN)/campus-provision lab down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
