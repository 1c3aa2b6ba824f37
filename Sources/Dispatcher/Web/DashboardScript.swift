/// The dashboard's script (`GET /ui/app.js`): plain JavaScript, no framework. It builds every
/// view with DOM calls and puts each value from the API in as text, never as HTML; the
/// Content-Security-Policy forbids any other script.
enum DashboardScript {
    static let source = #"""
        'use strict';
        // StepFleet dashboard. Plain DOM: every value from the API goes in as text (textContent,
        // createTextNode), never as HTML.

        const state = { session: null, cleanups: [] };
        const FINAL = ['success', 'error', 'cancelled', 'aborted'];

        function el(tag, attributes, ...children) {
          const node = document.createElement(tag);
          for (const [name, value] of Object.entries(attributes || {})) {
            if (value === undefined || value === null || value === false) continue;
            if (name === 'class') node.className = value;
            else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
            else node.setAttribute(name, value === true ? '' : String(value));
          }
          for (const child of children.flat()) {
            if (child === undefined || child === null || child === false) continue;
            node.append(child instanceof Node ? child : document.createTextNode(String(child)));
          }
          return node;
        }

        function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
        function main() { return document.getElementById('main'); }

        function notice(text, isError) {
          const box = document.getElementById('notice');
          box.textContent = text || '';
          box.className = isError ? 'error' : '';
          box.hidden = !text;
        }

        function onCleanup(fn) { state.cleanups.push(fn); }
        function leavePage() {
          for (const fn of state.cleanups.splice(0)) { try { fn(); } catch (e) { /* already gone */ } }
        }

        function every(ms, fn) {
          let stopped = false;
          let timer = null;
          const tick = async () => {
            if (stopped) return;
            try { await fn(); } catch (e) { if (!stopped && e.message !== 'signed out') notice(e.message, true); }
            if (!stopped) timer = setTimeout(tick, ms);
          };
          tick();
          onCleanup(() => { stopped = true; clearTimeout(timer); });
        }

        async function api(method, path, body) {
          const headers = {};
          if (method !== 'GET') {
            headers['X-CSRF-Token'] = state.session ? state.session.csrf : '';
            headers['Content-Type'] = 'application/json';
          }
          const response = await fetch(path, {
            method, headers, credentials: 'same-origin', cache: 'no-store',
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          let data = null;
          try { data = await response.json(); } catch (e) { data = null; }
          if (response.status === 401 && state.session) {
            state.session = null;
            showSignIn('Your session has ended: sign in again.');
            throw new Error('signed out');
          }
          if (!response.ok) throw new Error((data && data.error) || (method + ' ' + path + ': HTTP ' + response.status));
          return data;
        }

        function query(params) {
          const search = new URLSearchParams();
          for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
          const text = search.toString();
          return text ? '?' + text : '';
        }

        function badge(status) {
          return el('span', { class: 'badge st-' + String(status).replace(/[^a-z]/g, ''), 'data-status': status }, status);
        }

        function when(iso) {
          if (!iso) return '';
          const date = new Date(iso);
          return isNaN(date) ? String(iso) : date.toLocaleString();
        }

        function seconds(ms) {
          if (ms === null || ms === undefined) return '';
          return ms < 10000 ? (ms / 1000).toFixed(1) + ' s' : ms < 120000 ? Math.round(ms / 1000) + ' s' : (ms / 60000).toFixed(1) + ' min';
        }

        function changeLink(id, text) { return el('a', { href: '#/change/' + encodeURIComponent(id) }, text || String(id).slice(0, 8)); }

        // ---- sign-in and the shell

        function showSignIn(message) {
          leavePage();
          document.getElementById('nav').hidden = true;
          document.getElementById('sign-out').hidden = true;
          document.getElementById('who').textContent = '';
          notice(message || '', Boolean(message));
          const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'sft_…', required: true });
          const form = el('form', { id: 'sign-in', class: 'card signin' },
            el('h1', {}, 'Sign in'),
            el('p', { class: 'muted' }, 'Paste an API token (stepfleet token create). It is exchanged for a session cookie and not kept by the page.'),
            el('label', {}, 'API token', input),
            el('p', {}, el('button', { class: 'primary', type: 'submit' }, 'Sign in')));
          form.addEventListener('submit', async (event) => {
            event.preventDefault();
            try {
              const response = await fetch('/ui/session', {
                method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' },
                body: JSON.stringify({ token: input.value }),
              });
              const data = await response.json().catch(() => null);
              if (!response.ok) throw new Error((data && data.error) || 'sign-in failed: HTTP ' + response.status);
              input.value = '';
              signedIn(data);
            } catch (e) { notice(e.message, true); }
          });
          clear(main()).append(form);
          input.focus();
        }

        function signedIn(session) {
          state.session = session;
          notice('');
          document.getElementById('nav').hidden = false;
          document.getElementById('sign-out').hidden = false;
          document.getElementById('who').textContent = session.name + ' (' + session.scope + ')';
          if (!location.hash || location.hash === '#') location.hash = '#/changes';
          else route();
        }

        async function signOut() {
          try { await api('POST', '/ui/session/end', {}); } catch (e) { /* ended anyway */ }
          state.session = null;
          showSignIn('Signed out.');
        }

        function route() {
          if (!state.session) return;
          leavePage();
          notice('');
          const hash = location.hash.replace(/^#/, '') || '/changes';
          const [path, search] = hash.split('?');
          const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
          const params = new URLSearchParams(search || '');
          for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('current', link.dataset.page === (parts[0] === 'change' ? 'changes' : parts[0]));
          const page = main();
          clear(page);
          switch (parts[0]) {
            case 'change': return changePage(page, parts[1]);
            case 'new': return newChangePage(page);
            case 'properties': return propertiesPage(page, parts[1], parts[2]);
            case 'workers': return workersPage(page);
            default: return changesPage(page, params);
          }
        }

        // ---- project and environment pickers

        async function projectPicker(select, selected) {
          const projects = await api('GET', '/projects');
          for (const project of projects) select.append(el('option', { value: project.code, selected: project.code === selected }, project.code));
        }

        async function environmentPicker(select, project, selected, blank) {
          clear(select);
          if (blank) select.append(el('option', { value: '' }, blank));
          if (!project) return;
          const environments = await api('GET', '/projects/' + encodeURIComponent(project) + '/environments');
          for (const environment of environments) select.append(el('option', { value: environment.code, selected: environment.code === selected }, environment.code));
        }

        // ---- changes

        function changesPage(page, params) {
          const filters = { project: params.get('project') || '', environment: params.get('environment') || '', status: params.get('status') || '' };
          const project = el('select', { id: 'filter-project' }, el('option', { value: '' }, 'all'));
          const environment = el('select', { id: 'filter-environment' }, el('option', { value: '' }, 'all'));
          const status = el('select', { id: 'filter-status' }, el('option', { value: '' }, 'all'),
            ['pending', 'running', 'success', 'error', 'cancelled'].map((s) => el('option', { value: s, selected: s === filters.status }, s)));
          const apply = () => { location.hash = '#/changes' + query({ project: project.value, environment: project.value ? environment.value : '', status: status.value }); };
          project.addEventListener('change', () => { environment.value = ''; apply(); });
          environment.addEventListener('change', apply);
          status.addEventListener('change', apply);
          projectPicker(project, filters.project).then(() => environmentPicker(environment, filters.project, filters.environment, 'all')).catch((e) => notice(e.message, true));
          const body = el('tbody', { id: 'changes' });
          page.append(
            el('h1', {}, 'Changes'),
            el('form', { class: 'filters' }, el('label', {}, 'Project', project), el('label', {}, 'Environment', environment), el('label', {}, 'Status', status)),
            el('table', {}, el('thead', {}, el('tr', {}, ['Status', 'Change', 'Project / environment', 'Action', 'Revision', 'User', 'Created', 'Took'].map((h) => el('th', {}, h)))), body));
          every(2000, async () => {
            const changes = await api('GET', '/changes' + query({ project: filters.project, environment: filters.environment, status: filters.status, limit: '100' }));
            clear(body);
            if (!changes.length) body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'No changes.')));
            for (const change of changes) {
              const took = change.started_at ? (new Date(change.finished_at || Date.now()) - new Date(change.started_at)) : null;
              body.append(el('tr', { 'data-change-id': change.id },
                el('td', {}, badge(change.status)), el('td', { class: 'mono' }, changeLink(change.id)),
                el('td', {}, change.project + ' / ' + change.environment), el('td', {}, change.action),
                el('td', { class: 'mono' }, change.git_rev + ' @ ' + String(change.git_sha).slice(0, 10)), el('td', {}, change.user),
                el('td', {}, when(change.created_at)), el('td', {}, took === null ? '' : seconds(took))));
            }
          });
        }

        // ---- one change

        function flatten(step, depth, out) {
          if (!step) return out;
          out.push({ step, depth });
          for (const child of step.children || []) flatten(child, depth + 1, out);
          return out;
        }

        function changePage(page, id) {
          const view = { change: null, selected: null, lines: [], rows: new Map() };
          const status = el('span', { id: 'change-status' });
          const meta = el('dl', { class: 'meta' });
          const cancel = el('button', { id: 'cancel', class: 'danger', type: 'button', hidden: true }, 'Cancel');
          const retry = el('button', { id: 'retry', type: 'button', hidden: true }, 'Retry');
          const tree = el('ul', { class: 'tree', id: 'tree' });
          const timeline = el('div', { class: 'timeline', id: 'timeline' });
          const logTitle = el('h2', { id: 'log-title' }, 'Log');
          const log = el('div', { class: 'log', id: 'log' }, el('div', { class: 'muted' }, 'Select a step to see its log.'));
          page.append(
            el('h1', {}, 'Change ', el('span', { class: 'mono', id: 'change-id' }, id), ' ', status),
            el('div', { class: 'card' }, meta, el('div', { class: 'actions' }, cancel, retry)),
            el('div', { class: 'change-layout' },
              el('div', {}, el('h2', {}, 'Steps'), el('div', { class: 'card' }, tree)),
              el('div', {}, logTitle, log)),
            el('h2', {}, 'Timeline'), el('div', { class: 'card' }, timeline));

          cancel.addEventListener('click', async () => {
            cancel.disabled = true;
            try { await api('POST', '/changes/' + encodeURIComponent(id) + '/cancel', {}); notice('Cancel requested.'); } catch (e) { notice(e.message, true); }
            cancel.disabled = false;
          });
          retry.addEventListener('click', async () => {
            retry.disabled = true;
            try {
              const change = await api('POST', '/changes/' + encodeURIComponent(id) + '/retry', { user: state.session.name });
              location.hash = '#/change/' + encodeURIComponent(change.id);
            } catch (e) { notice(e.message, true); retry.disabled = false; }
          });

          function renderLog() {
            clear(log);
            const step = view.selected;
            const lines = view.lines.filter((line) => line.step === step);
            if (!step) { log.append(el('div', { class: 'muted' }, 'Select a step to see its log.')); return; }
            if (!lines.length) log.append(el('div', { class: 'muted' }, 'No output yet.'));
            for (const line of lines) appendLine(line);
          }
          function appendLine(line) {
            log.append(el('div', { class: 'line ' + (line.stream === 'stderr' ? 'stderr' : line.stream === 'system' ? 'system' : 'stdout'), 'data-stream': line.stream },
              el('span', { class: 'stream' }, line.stream + (line.attempt > 1 ? ' #' + line.attempt : '')), el('span', { class: 'text' }, line.text)));
          }
          function select(stepId, action) {
            view.selected = stepId;
            logTitle.textContent = 'Log of ' + action;
            for (const [key, row] of view.rows) row.classList.toggle('selected', key === stepId);
            renderLog();
          }

          function renderTree(root) {
            const entries = flatten(root, 0, []);
            const keep = new Set();
            for (const { step, depth } of entries) {
              keep.add(step.id);
              let row = view.rows.get(step.id);
              if (!row) {
                row = el('li', { 'data-step-id': step.id },
                  el('span', { class: 'indent' }), el('span', { class: 'status' }),
                  el('button', { class: 'step-name', type: 'button', onclick: () => select(step.id, step.action) }),
                  el('span', { class: 'detail' }), el('span', { class: 'step-error' }));
                view.rows.set(step.id, row);
              }
              const [indent, statusCell, name, detail, error] = row.children;
              row.dataset.action = step.action;
              row.dataset.status = step.status;
              indent.style.width = (depth * 18) + 'px';
              clear(statusCell).append(badge(step.status));
              name.textContent = step.action;
              const details = ['attempt ' + step.attempt];
              const attempts = step.attempts || [];
              const worker = step.worker || (attempts.length ? attempts[attempts.length - 1].worker : null);
              if (worker) details.push('on ' + worker);
              if (step.child_execution_strategy) details.push(step.child_execution_strategy);
              if (step.duration_ms !== null && step.duration_ms !== undefined) details.push(seconds(step.duration_ms));
              detail.textContent = details.join(' · ');
              error.textContent = step.error || '';
              error.hidden = !step.error;
              tree.append(row);
            }
            for (const [key, row] of view.rows) if (!keep.has(key)) { row.remove(); view.rows.delete(key); }
          }

          function renderMeta(change) {
            status.replaceChildren(badge(change.status));
            status.dataset.status = change.status;
            const items = [['Action', change.action], ['Project / environment', change.project + ' / ' + change.environment],
              ['Revision', change.git_rev + ' @ ' + change.git_sha], ['User', change.user], ['Created', when(change.created_at)],
              ['Started', when(change.started_at)], ['Finished', when(change.finished_at)]];
            clear(meta);
            for (const [key, value] of items) meta.append(el('dt', {}, key), el('dd', {}, value || '—'));
            if (change.retry_of) meta.append(el('dt', {}, 'Retry of'), el('dd', {}, changeLink(change.retry_of, change.retry_of)));
            const final = FINAL.includes(change.status);
            cancel.hidden = final;
            retry.hidden = !final || change.status === 'success' || state.session.scope !== 'operator';
            if (state.session.scope !== 'operator') cancel.hidden = true;
          }

          const events = new EventSource('/ui/changes/' + encodeURIComponent(id) + '/events');
          onCleanup(() => events.close());
          events.addEventListener('change', (event) => {
            const data = JSON.parse(event.data);
            view.change = data.change;
            renderMeta(data.change);
            renderTree(data.change.root);
            renderTimeline(timeline, flatten(data.change.root, 0, []), data.times, data.now);
            if (!view.selected && data.change.root) select(data.change.root.id, data.change.root.action);
          });
          events.addEventListener('end', () => events.close());
          events.addEventListener('error', () => {
            if (view.change && FINAL.includes(view.change.status)) events.close();
          });

          const controller = new AbortController();
          onCleanup(() => controller.abort());
          followLogs(id, controller.signal, (line) => {
            view.lines.push(line);
            if (line.step === view.selected) {
              if (log.firstChild && log.firstChild.classList.contains('muted')) clear(log);
              appendLine(line);
              log.scrollTop = log.scrollHeight;
            }
          }).catch((e) => { if (e.name !== 'AbortError') notice('log: ' + e.message, true); });
        }

        async function followLogs(id, signal, onLine) {
          const response = await fetch('/changes/' + encodeURIComponent(id) + '/logs?follow=true&format=json', { signal, credentials: 'same-origin' });
          if (!response.ok) throw new Error('HTTP ' + response.status);
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf('\n')) >= 0) {
              const text = buffer.slice(0, end);
              buffer = buffer.slice(end + 1);
              if (text.trim()) onLine(JSON.parse(text));
            }
          }
        }

        const PARTS = [['build.initialise', 'build-initialise'], ['run.initialise', 'run-initialise'], ['run.running', 'run-running'], ['run.completing', 'run-completing']];

        // The bars of one step on the time axis (epoch ms): queued, then the worker's build and run
        // phases (phase_durations_ms), then the time until it finished (its children, or waiting).
        function stepBars(step, t, now) {
          const bars = [];
          const add = (kind, from, to, title) => { if (to > from) bars.push({ kind, from, to, title }); };
          const finished = t.finished || (FINAL.includes(step.status) ? null : now);
          const phases = step.phase_durations_ms || {};
          if (t.queued) add('queued', t.queued, t.started || finished || t.queued, 'queued');
          if (!t.started) return bars;
          let last = t.started;
          if (phases['build'] !== undefined) {
            add('build', t.started, t.started + phases['build'], 'build');
            if (phases['build.initialise'] !== undefined) add('build-initialise', t.started, t.started + phases['build.initialise'], 'build: checkout and files');
            last = t.started + phases['build'];
          }
          const runStart = t.run_started || last;
          let cursor = runStart;
          for (const [name, kind] of PARTS.slice(1)) {
            if (phases[name] === undefined) continue;
            add(kind, cursor, cursor + phases[name], name);
            cursor += phases[name];
          }
          if (phases['run'] !== undefined) cursor = Math.max(cursor, runStart + phases['run']);
          if (cursor > runStart) last = Math.max(last, cursor);
          if (!Object.keys(phases).length && finished) { add('active', t.started, finished, 'running'); last = finished; }
          if (finished && finished > last) add('children', last, finished, step.children && step.children.length ? 'children' : 'waiting');
          return bars;
        }

        function renderTimeline(container, entries, times, now) {
          clear(container);
          // Each step's bars first (worker-measured phases can end a little after the dispatcher's
          // finish time), then one time axis over all of them.
          const rows = entries.map(({ step, depth }) => ({ step, depth, bars: stepBars(step, times[step.id] || {}, now) }));
          const all = rows.flatMap((row) => row.bars);
          if (!all.length) { container.append(el('p', { class: 'muted' }, 'No step has been queued yet.')); return; }
          const start = Math.min(...all.map((bar) => bar.from));
          const span = Math.max(Math.max(...all.map((bar) => bar.to)) - start, 1);
          for (const { step, depth, bars } of rows) {
            const track = el('div', { class: 'track' });
            for (const bar of bars) {
              const node = el('div', { class: 'seg seg-' + bar.kind, title: bar.title + ': ' + seconds(bar.to - bar.from) });
              node.style.left = ((bar.from - start) / span * 100) + '%';
              node.style.width = ((bar.to - bar.from) / span * 100) + '%';
              track.append(node);
            }
            container.append(el('div', { class: 'row', 'data-step-id': step.id },
              el('div', { class: 'label', title: step.action }, '\u00a0'.repeat(depth * 3) + step.action), track));
          }
          const axis = el('div', { class: 'axis' });
          for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
            axis.append(el('span', { class: 'tick' }, '+' + seconds(span * fraction)));
            axis.lastChild.style.left = (fraction * 100) + '%';
          }
          container.append(axis, el('div', { class: 'legend' },
            [['queued', 'queued'], ['build-initialise', 'build: checkout'], ['build', 'build: image'], ['run-initialise', 'run: container'],
              ['run-running', 'run: running'], ['run-completing', 'run: results'], ['children', 'children / waiting']].map(([kind, text]) => el('span', { class: 'seg-' + kind }, text))));
        }

        // ---- create a change

        function newChangePage(page) {
          const project = el('select', { id: 'new-project', required: true }, el('option', { value: '' }, 'choose…'));
          const environment = el('select', { id: 'new-environment', required: true });
          const revision = el('input', { id: 'new-revision', placeholder: 'default branch', spellcheck: 'false' });
          const action = el('select', { id: 'new-action', required: true });
          const found = el('span', { class: 'muted', id: 'new-found' });
          const submit = el('button', { class: 'primary', type: 'submit', id: 'new-submit' }, 'Create change');
          let loads = 0;
          async function loadActions() {
            const mine = ++loads;
            clear(action);
            found.textContent = '';
            if (!project.value) return;
            found.textContent = 'reading the actions file…';
            try {
              const answer = await api('GET', '/ui/actions' + query({ project: project.value, git_rev: revision.value.trim() }));
              if (mine !== loads) return;
              for (const name of answer.actions) action.append(el('option', { value: name }, name));
              found.textContent = answer.file + ' at ' + answer.git_rev + ' (' + answer.git_sha.slice(0, 12) + ')';
            } catch (e) { if (mine === loads) found.textContent = e.message; }
          }
          project.addEventListener('change', () => { environmentPicker(environment, project.value, '', null).catch((e) => notice(e.message, true)); loadActions(); });
          revision.addEventListener('change', loadActions);
          const form = el('form', { class: 'card', id: 'new-change' },
            el('h1', {}, 'New change'),
            el('div', { class: 'inline' }, el('label', {}, 'Project', project), el('label', {}, 'Environment', environment),
              el('label', {}, 'Git revision', revision), el('label', {}, 'Action', action)),
            el('p', {}, found),
            el('p', {}, submit));
          form.addEventListener('submit', async (event) => {
            event.preventDefault();
            submit.disabled = true;
            try {
              const change = await api('POST', '/changes', {
                project: project.value, environment: environment.value, action: action.value, git_rev: revision.value.trim() || null, user: state.session.name,
              });
              location.hash = '#/change/' + encodeURIComponent(change.id);
            } catch (e) { notice(e.message, true); submit.disabled = false; }
          });
          page.append(form);
          projectPicker(project, '').catch((e) => notice(e.message, true));
        }

        // ---- properties

        function propertiesPage(page, projectCode, environmentCode) {
          const project = el('select', { id: 'props-project' }, el('option', { value: '' }, 'choose…'));
          const environment = el('select', { id: 'props-environment' });
          const go = () => { location.hash = '#/properties' + (project.value ? '/' + encodeURIComponent(project.value) + (environment.value ? '/' + encodeURIComponent(environment.value) : '') : ''); };
          project.addEventListener('change', () => { environment.value = ''; go(); });
          environment.addEventListener('change', go);
          page.append(el('h1', {}, 'Properties'), el('form', { class: 'filters' }, el('label', {}, 'Project', project), el('label', {}, 'Environment', environment)));
          projectPicker(project, projectCode).then(() => environmentPicker(environment, projectCode, environmentCode, '(the project\u2019s own)')).catch((e) => notice(e.message, true));
          if (!projectCode) return;
          const base = '/projects/' + encodeURIComponent(projectCode) + (environmentCode ? '/environments/' + encodeURIComponent(environmentCode) : '') + '/properties';
          const owner = { project: projectCode, environment: environmentCode || '' };
          const current = el('pre', { id: 'props-current' });
          const versions = el('tbody', { id: 'props-versions' });
          const from = el('select', { id: 'diff-from' });
          const to = el('select', { id: 'diff-to' });
          const diff = el('div', { class: 'diff', id: 'props-diff' });
          const show = el('button', { type: 'button', id: 'diff-show' }, 'Show diff');
          page.append(
            el('h2', {}, 'Current document ', el('span', { class: 'muted', id: 'props-version' })), el('div', { class: 'card' }, current),
            el('h2', {}, 'Versions'), el('table', {}, el('thead', {}, el('tr', {}, ['Version', 'Written by', 'At'].map((h) => el('th', {}, h)))), versions),
            el('h2', {}, 'Diff'), el('div', { class: 'card' }, el('form', { class: 'inline' }, el('label', {}, 'From', from), el('label', {}, 'To', to), show), diff));
          show.addEventListener('click', async () => {
            try {
              const answer = await api('GET', '/ui/properties/diff' + query(Object.assign({ from: from.value, to: to.value }, owner)));
              clear(diff);
              if (!answer.patch.length) diff.append(el('p', { class: 'muted' }, 'The two versions are the same.'));
              for (const op of answer.patch) {
                diff.append(el('pre', { class: op.op }, op.op + ' ' + op.path + ('value' in op ? ' = ' + JSON.stringify(op.value) : '')));
              }
            } catch (e) { notice(e.message, true); }
          });
          (async () => {
            const shown = await api('GET', base);
            page.querySelector('#props-version').textContent = 'version ' + shown.version;
            current.textContent = JSON.stringify(shown.properties, null, 2);
            const list = await api('GET', '/ui/properties' + query(owner));
            for (const version of list) {
              const writer = version.written_by;
              const who = writer.kind === 'step'
                ? el('span', {}, 'step ', el('b', {}, writer.action || writer.step), ' of change ', writer.change ? changeLink(writer.change) : '?', writer.user ? ' (' + writer.user + ')' : '')
                : el('span', {}, 'the API', writer.user ? el('span', {}, ' (token ', el('b', {}, writer.user), ')') : ' (a user)');
              versions.append(el('tr', {}, el('td', {}, String(version.version)), el('td', {}, who), el('td', {}, when(version.created_at))));
              from.append(el('option', { value: version.version, selected: version.version === (list.length > 1 ? list[1].version : list[0].version) }, String(version.version)));
              to.append(el('option', { value: version.version }, String(version.version)));
            }
          })().catch((e) => notice(e.message, true));
        }

        // ---- workers

        function workersPage(page) {
          const broker = el('p', { id: 'broker' });
          const body = el('tbody', { id: 'workers' });
          const seenWithin = el('span', { class: 'muted' });
          page.append(el('h1', {}, 'Workers'), el('div', { class: 'card' }, broker),
            el('h2', {}, 'Seen recently ', seenWithin),
            el('table', {}, el('thead', {}, el('tr', {}, ['Name', 'Pool', 'Broker user', 'Slots in use', 'Running', 'Last heard'].map((h) => el('th', {}, h)))), body));
          every(3000, async () => {
            const fleet = await api('GET', '/ui/fleet');
            clear(broker);
            if (fleet.broker) {
              broker.append('Dispatcher\u2019s broker connection: ', el('span', { class: 'badge ' + (fleet.broker.connected ? 'st-success' : 'st-error'), id: 'broker-state' }, fleet.broker.connected ? 'connected' : 'disconnected'),
                ' · connections made: ' + fleet.broker.connections);
            } else broker.append('This dispatcher serves the API without a broker connection.');
            seenWithin.textContent = '(within the last ' + Math.round(fleet.seen_within_seconds / 60) + ' minutes; running workers announce themselves every few seconds, idle or busy)';
            clear(body);
            if (!fleet.workers.length) body.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No worker has been heard from recently.')));
            for (const worker of fleet.workers) {
              body.append(el('tr', { 'data-worker': worker.name },
                el('td', {}, worker.name), el('td', {}, worker.pool || ''), el('td', {}, worker.broker_user || ''),
                el('td', {}, String(worker.slots_in_use) + (worker.slots === null ? '' : ' of ' + worker.slots) + (worker.draining ? ' (draining)' : '')),
                el('td', {}, worker.running.map((run) => el('div', {}, changeLink(run.change), ' ' + run.action))),
                el('td', {}, worker.last_heard_seconds_ago + ' s ago')));
            }
          });
        }

        // ---- start

        document.addEventListener('DOMContentLoaded', async () => {
          document.getElementById('sign-out').addEventListener('click', signOut);
          window.addEventListener('hashchange', route);
          try {
            const response = await fetch('/ui/session', { credentials: 'same-origin', cache: 'no-store' });
            if (response.ok) signedIn(await response.json());
            else showSignIn();
          } catch (e) { showSignIn(e.message); }
        });

        """#
}
