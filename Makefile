# Two commands: `make run` and `make test`. Everything else is set up by them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := PIP_CONSTRAINT=$(CURDIR)/constraints-build.txt $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test venv setup demo messages

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints-build.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

setup: venv
	mkdir -p var
	DEBUG=1 $(PY) manage.py migrate --noinput -v 0
	DEBUG=1 $(PY) manage.py loaddemo

run: setup
	DEBUG=1 $(PY) manage.py runconsole --host $(HOST) --port $(PORT) --server "mail1/Acme"

test: venv
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -p no:cacheprovider -n 2

messages: venv
	DEBUG=1 $(PY) manage.py makemessages -l fr --no-obsolete --ignore=.venv --ignore=tests --ignore=static-collected
	DEBUG=1 $(PY) manage.py compilemessages --ignore=.venv
