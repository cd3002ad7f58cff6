// The dashboard's account pages (docs/dashboard.md): /security (password, two-factor
// authentication, the user's own API keys, their signed-in sessions) and /preferences (the opt-in
// to product e-mails). Everything is done as the signed-in user through the platform's API, which
// decides and audits; secrets (a new TOTP key, recovery codes, a new API key) are shown in the
// answer to the form that made them, never put in an address.
/** @import { IncomingMessage, ServerResponse } from 'node:http' */
/** @import { Answer, Call, Session } from './server.mjs' */
import { badge, confirmDialog, emptyState, escape, hidden, notice, readForm, table } from './web.mjs';

/**
 * GET /api/v1/auth/totp.
 * @typedef {{ enabled: boolean, enabledAt: string | null, recoveryCodesLeft: number }} TotpStatus
 */
/**
 * POST /api/v1/auth/totp/enrol.
 * @typedef {{ secret: string, otpauthUrl: string, qrSvg: string }} TotpEnrolment
 */
/**
 * GET /api/v1/auth/sessions.
 * @typedef {{ sessions: { id: string, createdAt: string, lastUsedAt: string, expiresAt: string, current: boolean }[] }} UserSessions
 */
/**
 * One of GET /api/v1/tenants/{tenant}/api-keys; `key` only in the answer that created it.
 * @typedef {{ id: string, name: string, role: string, prefix: string, createdAt: string, expiresAt: string | null, revokedAt: string | null, lastUsedAt: string | null, createdBy: string | null, key?: string }} ApiKey
 */
/**
 * GET and PUT /api/v1/auth/me/preferences.
 * @typedef {{ marketingEmails: boolean, marketingEmailsSince: string | null, marketingEmailsWording: string }} Preferences
 */

/**
 * What the pages need of the dashboard (server.mjs).
 * @typedef {object} AccountContext
 * @property {<T>(session: Session, path: string, init?: Call) => Promise<Answer<T>>} asUser the API as
 *   the user, refreshing their token once on a 401
 * @property {<T>(session: Session, path: string, init?: Call) => Promise<Answer<T>>} once the API as the
 *   user without that refresh: for calls whose 401 means a wrong password or code (the session was
 *   checked a moment before, so the token is fresh)
 * @property {(session: Session, current: string, title: string, body: string) => string} frame
 * @property {(session: Session) => string} csrfOf
 * @property {(session: Session, given: string | undefined) => boolean} csrfOk
 * @property {(res: ServerResponse) => void} forbidden
 * @property {(res: ServerResponse, where: string, message: string, error?: boolean) => void} back
 * @property {(res: ServerResponse, status: number, html: string, headers?: Record<string, string | string[]>) => void} send
 * @property {(url: URL) => string} messageOf
 * @property {(answer: Answer<unknown>) => string} refusedWith
 * @property {(t: string | Date) => string} when
 * @property {string} tid this tenant's id, for a path
 * @property {(req: IncomingMessage, res: ServerResponse, session: Session, password: string) => Promise<void>} signInAgain
 *   after a password change (which ends every login): sign in with the new password and carry on,
 *   or send the browser to the sign-in page
 */

/**
 * A form field with its hint and, when refused, the reason next to it.
 * @param {{ name: string, label: string, type?: string, hint?: string, error?: string, autocomplete?: string, inputmode?: string, required?: boolean, value?: string, extra?: string }} o
 */
function field(o) {
  const id = `f-${o.name}`;
  const described = [o.hint ? `${id}-hint` : '', o.error ? `${id}-error` : ''].filter(Boolean).join(' ');
  return `<div class="field"><label for="${id}">${escape(o.label)}${
    o.hint ? `<span class="hint" id="${id}-hint">${escape(o.hint)}</span>` : ''
  }</label>
<input id="${id}" name="${escape(o.name)}" type="${o.type ?? 'text'}"${o.autocomplete ? ` autocomplete="${o.autocomplete}"` : ''}${
    o.inputmode ? ` inputmode="${o.inputmode}"` : ''
  }${o.required === false ? '' : ' required'}${o.value ? ` value="${escape(o.value)}"` : ''}${
    described ? ` aria-describedby="${described}"` : ''
  }${o.error ? ' aria-invalid="true"' : ''}${o.extra ?? ''}>${
    o.error ? `<div class="field-error" id="${id}-error">${escape(o.error)}</div>` : ''
  }</div>`;
}

/** What the platform's enrol route draws: one svg of paths and nothing else, or nothing. */
const QR_SVG = /^<svg [^<>]*>(<path [^<>]*\/>)+<\/svg>$/;
const qrOf = (/** @type {string} */ svg) => (QR_SVG.test(svg) && !/\son\w+=/i.test(svg) ? svg : '');

/** "yyyy-mm-dd" → the end of that day (UTC), if it is a real date. */
function endOfDay(/** @type {string} */ day) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return undefined;
  const t = new Date(`${day}T23:59:59Z`);
  return Number.isNaN(t.getTime()) || t.toISOString().slice(0, 10) !== day ? undefined : t;
}

/**
 * The account pages, bound to the dashboard's helpers.
 * @param {AccountContext} ctx
 */
export function accountPages(ctx) {
  const { asUser, once, frame, csrfOf, when } = ctx;
  /** Refused or unreachable: a 503 with no body. */
  const down = () => /** @type {Answer<never>} */ ({ status: 503, body: {} });
  const keysPath = `/api/v1/tenants/${ctx.tid}/api-keys`;
  const isOwner = (/** @type {Session} */ s) => s.role === 'tenant_owner';

  /**
   * What a form shows after it was refused (next to its field) or after it made a secret.
   * @typedef {object} Shown
   * @property {string} [form] which form: password, totp, key
   * @property {Record<string, string>} [errors] by field name
   * @property {string} [error] about the form as a whole
   * @property {string[]} [recoveryCodes]
   * @property {ApiKey} [newKey]
   * @property {{ name?: string, expires?: string }} [keyInput] what was typed
   */

  /** @param {Session} session @param {Shown} shown */
  function passwordCard(session, shown) {
    const errors = shown.form === 'password' ? (shown.errors ?? {}) : {};
    return `<section class="card" aria-labelledby="h-password"><h2 id="h-password">Password</h2>
<p class="muted">After a change, every other place you are signed in is signed out.</p>
<form method="post" action="password-change" novalidate>${csrfOf(session)}
${field({ name: 'currentPassword', label: 'Current password', type: 'password', autocomplete: 'current-password', error: errors.currentPassword })}
${field({ name: 'newPassword', label: 'New password', type: 'password', autocomplete: 'new-password', hint: 'At least 12 characters, not a common password.', error: errors.newPassword })}
<button type="submit">Change password</button></form></section>`;
  }

  /** @param {Session} session @param {TotpStatus | undefined} status @param {Shown} shown */
  function totpCard(session, status, shown) {
    const errors = shown.form === 'totp' ? (shown.errors ?? {}) : {};
    const head = `<section class="card" aria-labelledby="h-totp"><h2 id="h-totp">Two-factor authentication</h2>`;
    if (shown.recoveryCodes)
      return `${head}${notice('Two-factor authentication is on. From now on, signing in asks for a code from your app.')}
<h3>Your recovery codes</h3>
<p>Each code signs you in once if you lose your phone. <strong>This is the only time they are shown</strong>: store them somewhere safe now.</p>
<ul class="codes" aria-label="Recovery codes">${shown.recoveryCodes.map((c) => `<li>${escape(c)}</li>`).join('')}</ul>
<p><a class="button" href="security">I have saved them</a></p></section>`;
    if (!status)
      return `${head}${notice('Its state cannot be read right now; try again shortly.', 'error')}</section>`;
    const enrolling = session.totpEnrolment;
    if (!status.enabled && enrolling) {
      const qr = qrOf(enrolling.qrSvg);
      return `${head}<p>Scan this code with an authenticator app, then enter the six-digit code it shows.</p>
<figure class="stack">${qr}<figcaption class="small muted">Cannot scan it? Enter this key in the app: <code id="totp-secret">${escape(enrolling.secret)}</code></figcaption></figure>
<form method="post" action="totp-confirm" novalidate>${csrfOf(session)}
${field({ name: 'code', label: 'Code from your app', hint: 'Six digits', autocomplete: 'one-time-code', inputmode: 'numeric', error: errors.code })}
<div class="actions"><button type="submit">Turn on two-factor authentication</button></div></form>
<form method="post" action="totp-cancel">${csrfOf(session)}<button type="submit" class="secondary">Cancel setting it up</button></form></section>`;
    }
    if (!status.enabled)
      return `${head}<p>${badge('off', 'Off')} Signing in asks only for your password. With two-factor authentication on, it also asks for a code from an app on your phone.</p>
${errors.start ? notice(errors.start, 'error') : ''}
<form method="post" action="totp-start">${csrfOf(session)}<button type="submit">Set up two-factor authentication</button></form></section>`;
    return `${head}<p>${badge('ok', 'On')} since ${escape(when(status.enabledAt ?? ''))}. ${status.recoveryCodesLeft} of 10 recovery codes unused.</p>
<h3>Turn it off</h3>
<p class="muted">Enter a current code from your app, or one of your recovery codes.</p>
<form method="post" action="totp-disable" novalidate>${csrfOf(session)}
${field({ name: 'code', label: 'Code from your app', hint: 'Six digits', autocomplete: 'one-time-code', inputmode: 'numeric', required: false, error: errors.code })}
${field({ name: 'recoveryCode', label: 'Or a recovery code', autocomplete: 'off', required: false, error: errors.recoveryCode })}
<button type="submit" class="danger">Turn off two-factor authentication</button></form></section>`;
  }

  /** @param {Session} session @param {Shown} shown */
  async function keysCard(session, shown) {
    const head = `<section class="card" aria-labelledby="h-keys"><h2 id="h-keys">Your API keys</h2>`;
    if (!isOwner(session))
      return `${head}<p class="muted">API keys let a program use this workspace's API. Only owners create and revoke them.</p></section>`;
    /** @type {Answer<{ apiKeys: ApiKey[] }>} */
    const list = await asUser(session, keysPath).catch(down);
    if (list.status !== 200) return `${head}${notice(ctx.refusedWith(list), 'error')}</section>`;
    const mine = (list.body.apiKeys ?? []).filter((k) => k.createdBy === session.userId && !k.revokedAt);
    const errors = shown.form === 'key' ? (shown.errors ?? {}) : {};
    const dialogs = mine.map((k, i) =>
      confirmDialog({
        id: `revoke-key-${i}`,
        title: `Revoke ${k.name}?`,
        text: `${k.name} (${k.prefix}…) stops working at once; anything using it is refused from then on. This cannot be undone.`,
        action: 'key-revoke',
        fields: `${csrfOf(session)}${hidden('key', k.id)}`,
        confirm: 'Revoke the key',
      }),
    );
    const expired = (/** @type {ApiKey} */ k) =>
      k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now();
    const rows = mine.map((k, i) => [
      `${escape(k.name)}<br><small class="mono">${escape(k.prefix)}…</small>`,
      escape(k.role === 'tenant_owner' ? 'Owner' : 'Member'),
      escape(when(k.createdAt)),
      k.expiresAt
        ? `${expired(k) ? badge('off', 'Expired') : ''} ${escape(when(k.expiresAt))}`
        : '<span class="muted">Never</span>',
      k.lastUsedAt ? escape(when(k.lastUsedAt)) : '<span class="muted">Not yet</span>',
      `<a class="button secondary" href="#revoke-key-${i}">Revoke…</a>`,
    ]);
    const created = shown.newKey?.key
      ? `${notice(`The key ${shown.newKey.name} is created. Copy it now: it is shown only this once.`)}
<p><code id="new-key">${escape(shown.newKey.key)}</code></p>`
      : '';
    const input = shown.form === 'key' ? (shown.keyInput ?? {}) : {};
    return `${head}<p class="muted">Keys you made for programs that use this workspace's API. A key has the role you give it, never more than yours.</p>
${created}${errors.form ? notice(errors.form, 'error') : ''}
${rows.length ? table('Your API keys', ['Name', 'Role', 'Created', 'Expires', 'Last used', ''], rows) : emptyState('No API keys', 'Create one below when a program needs one.')}
${dialogs.join('\n')}
<h3>Create a key</h3>
<form method="post" action="key-create" novalidate>${csrfOf(session)}
${field({ name: 'name', label: 'Name', hint: 'What uses it, e.g. "billing export".', autocomplete: 'off', value: input.name, error: errors.name })}
<div class="field"><label for="f-role">Role</label><select id="f-role" name="role"><option value="tenant_member" selected>Member</option><option value="tenant_owner">Owner</option></select></div>
${field({ name: 'expires', label: 'Expires on (optional)', type: 'date', hint: 'Leave empty for a key that does not expire. It stops working at the end of that day (UTC).', required: false, value: input.expires, error: errors.expires })}
<button type="submit">Create key</button></form></section>`;
  }

  /** @param {Session} session */
  async function sessionsCard(session) {
    const head = `<section class="card" aria-labelledby="h-sessions"><h2 id="h-sessions">Where you are signed in</h2>`;
    /** @type {Answer<UserSessions>} */
    const list = await asUser(session, '/api/v1/auth/sessions').catch(down);
    if (list.status !== 200) return `${head}${notice(ctx.refusedWith(list), 'error')}</section>`;
    const all = list.body.sessions ?? [];
    const dialogs = [];
    const rows = all.map((s, i) => {
      if (!s.current)
        dialogs.push(
          confirmDialog({
            id: `end-session-${i}`,
            title: 'Sign out this session?',
            text: `The session signed in on ${when(s.createdAt)} is signed out at once; whoever uses it must sign in again.`,
            action: 'session-end',
            fields: `${csrfOf(session)}${hidden('session', s.id)}`,
            confirm: 'Sign it out',
          }),
        );
      return [
        escape(when(s.createdAt)),
        escape(when(s.lastUsedAt)),
        escape(when(s.expiresAt)),
        s.current
          ? badge('info', 'This session')
          : `<a class="button secondary" href="#end-session-${i}">Sign out…</a>`,
      ];
    });
    const others = all.filter((s) => !s.current).length;
    if (others)
      dialogs.push(
        confirmDialog({
          id: 'end-others',
          title: 'Sign out everywhere else?',
          text: `${others} other session${others === 1 ? ' is' : 's are'} signed out at once: other browsers, apps and the workspace's services there ask for the password again. This one stays signed in.`,
          action: 'sessions-end-others',
          fields: csrfOf(session),
          confirm: 'Sign out everywhere else',
        }),
      );
    return `${head}<p class="muted">Each time you sign in (here, in another browser, or with the API) is a session. "Last used" is when it last renewed its sign-in, about every 10 minutes while in use. The platform does not record where a session signs in from.</p>
${table('Your sessions', ['Signed in', 'Last used', 'Ends', ''], rows)}
${others ? '<div class="actions"><a class="button danger" href="#end-others">Sign out everywhere else…</a></div>' : '<p class="muted">You are signed in nowhere else.</p>'}
${dialogs.join('\n')}</section>`;
  }

  /**
   * The security page.
   * @param {Session} session
   * @param {URL} url
   * @param {Shown} [shown]
   */
  async function securityPage(session, url, shown = {}) {
    /** @type {Answer<TotpStatus>} */
    const totp = await asUser(session, '/api/v1/auth/totp').catch(down);
    const status = totp.status === 200 ? /** @type {TotpStatus} */ (totp.body) : undefined;
    if (status?.enabled) delete session.totpEnrolment;
    const [keys, signedIn] = await Promise.all([keysCard(session, shown), sessionsCard(session)]);
    const body = `<h1>Security</h1>${shown.error ? notice(shown.error, 'error') : ctx.messageOf(url)}
<div class="stack">${passwordCard(session, shown)}
${totpCard(session, status, shown)}
${keys}
${signedIn}</div>`;
    return frame(session, 'security', 'Security', body);
  }

  /**
   * Show the security page as the answer to a form (a refusal next to its field, or a secret).
   * @param {ServerResponse} res
   * @param {Session} session
   * @param {number} status
   * @param {Shown} shown
   */
  async function answer(res, session, status, shown) {
    return ctx.send(res, status, await securityPage(session, new URL('http://dashboard/security'), shown));
  }

  /** The status for a refusal shown on the page: the API's 4xx, else 502. */
  const statusOf = (/** @type {Answer<unknown>} */ a) => (a.status >= 400 && a.status < 500 ? a.status : 502);

  /**
   * A signed-in form: its fields once the CSRF token is right, else undefined (refused already).
   * @param {IncomingMessage} req
   * @param {ServerResponse} res
   * @param {Session} session
   */
  async function formOf(req, res, session) {
    const form = await readForm(req);
    if (!ctx.csrfOk(session, form.csrf)) return void ctx.forbidden(res);
    return form;
  }

  /** @type {Record<string, (req: IncomingMessage, res: ServerResponse, session: Session) => Promise<void>>} */
  const forms = {
    async '/password-change'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      const currentPassword = String(form.currentPassword ?? '');
      const newPassword = String(form.newPassword ?? '');
      /** @type {Record<string, string>} */
      const errors = {};
      if (!currentPassword) errors.currentPassword = 'Enter your current password.';
      if (!newPassword) errors.newPassword = 'Enter a new password.';
      if (Object.keys(errors).length) return answer(res, session, 400, { form: 'password', errors });
      /** @type {Answer<{ sessionsEnded: number }>} */
      const changed = await once(session, '/api/v1/auth/password', {
        method: 'POST',
        body: JSON.stringify({ currentPassword, newPassword }),
      }).catch(down);
      if (changed.status === 200) return ctx.signInAgain(req, res, session, newPassword);
      if (changed.status === 401)
        return answer(res, session, 400, {
          form: 'password',
          errors: { currentPassword: 'That is not your current password.' },
        });
      if (changed.body.error?.details?.field === 'password')
        return answer(res, session, 400, {
          form: 'password',
          errors: { newPassword: `Choose another password: ${changed.body.error.message}.` },
        });
      return answer(res, session, statusOf(changed), { error: ctx.refusedWith(changed) });
    },

    async '/totp-start'(req, res, session) {
      if (!(await formOf(req, res, session))) return;
      /** @type {Answer<TotpEnrolment>} */
      const started = await asUser(session, '/api/v1/auth/totp/enrol', { method: 'POST' }).catch(down);
      if (started.status !== 200)
        return answer(res, session, statusOf(started), {
          form: 'totp',
          errors: { start: ctx.refusedWith(started) },
        });
      const { secret, qrSvg } = /** @type {TotpEnrolment} */ (started.body);
      session.totpEnrolment = { secret, qrSvg };
      return answer(res, session, 200, {});
    },

    async '/totp-cancel'(req, res, session) {
      if (!(await formOf(req, res, session))) return;
      delete session.totpEnrolment;
      return ctx.back(res, 'security', 'Two-factor authentication was not turned on.');
    },

    async '/totp-confirm'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      if (!session.totpEnrolment) return ctx.back(res, 'security', 'Start setting it up again.', true);
      const code = String(form.code ?? '').replace(/\s/g, '');
      if (!/^\d{6}$/.test(code))
        return answer(res, session, 400, {
          form: 'totp',
          errors: { code: 'Enter the six digits your app shows now.' },
        });
      /** @type {Answer<{ recoveryCodes: string[] }>} */
      const confirmed = await once(session, '/api/v1/auth/totp/confirm', {
        method: 'POST',
        body: JSON.stringify({ code }),
      }).catch(down);
      if (confirmed.status === 200) {
        delete session.totpEnrolment;
        return answer(res, session, 200, { recoveryCodes: confirmed.body.recoveryCodes ?? [] });
      }
      const why =
        confirmed.status === 401
          ? 'That code is wrong or expired; enter the one your app shows now.'
          : ctx.refusedWith(confirmed);
      return answer(res, session, statusOf(confirmed), { form: 'totp', errors: { code: why } });
    },

    async '/totp-disable'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      const code = String(form.code ?? '').replace(/\s/g, '');
      const recoveryCode = String(form.recoveryCode ?? '').trim();
      if (!code && !recoveryCode)
        return answer(res, session, 400, {
          form: 'totp',
          errors: { code: 'Enter a code from your app, or a recovery code below.' },
        });
      const proof = code ? { code } : { recoveryCode };
      const turnedOff = await once(session, '/api/v1/auth/totp/disable', {
        method: 'POST',
        body: JSON.stringify(proof),
      }).catch(down);
      if (turnedOff.status === 204)
        return ctx.back(
          res,
          'security',
          'Two-factor authentication is off; signing in asks only for your password.',
        );
      const fieldName = code ? 'code' : 'recoveryCode';
      const why =
        turnedOff.status === 401
          ? code
            ? 'That code is wrong, expired or already used.'
            : 'That recovery code is wrong or already used.'
          : ctx.refusedWith(turnedOff);
      return answer(res, session, statusOf(turnedOff), { form: 'totp', errors: { [fieldName]: why } });
    },

    async '/key-create'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      const name = String(form.name ?? '').trim();
      const expires = String(form.expires ?? '').trim();
      const keyInput = { name, expires };
      /** @type {Record<string, string>} */
      const errors = {};
      if (!name) errors.name = 'Give the key a name.';
      else if (name.length > 100) errors.name = 'Use at most 100 characters.';
      const until = expires ? endOfDay(expires) : undefined;
      if (expires && !until) errors.expires = 'Enter a date, or leave it empty.';
      else if (until && until.getTime() <= Date.now()) errors.expires = 'Choose a day after today.';
      if (Object.keys(errors).length) return answer(res, session, 400, { form: 'key', errors, keyInput });
      const role = form.role === 'tenant_owner' ? 'tenant_owner' : 'tenant_member';
      /** @type {Answer<ApiKey>} */
      const created = await asUser(session, keysPath, {
        method: 'POST',
        body: JSON.stringify({ name, role, ...(until ? { expiresAt: until.toISOString() } : {}) }),
      }).catch(down);
      if (created.status === 201)
        return answer(res, session, 201, { newKey: /** @type {ApiKey} */ (created.body) });
      const fieldName = created.body.error?.details?.field === 'expiresAt' ? 'expires' : 'form';
      return answer(res, session, statusOf(created), {
        form: 'key',
        errors: { [fieldName]: ctx.refusedWith(created) },
        keyInput,
      });
    },

    async '/key-revoke'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      /** @type {Answer<ApiKey>} */
      const revoked = await asUser(session, `${keysPath}/${encodeURIComponent(String(form.key ?? ''))}`, {
        method: 'DELETE',
      }).catch(down);
      return revoked.status === 200
        ? ctx.back(res, 'security', `The key ${revoked.body.name} is revoked; it no longer works.`)
        : ctx.back(res, 'security', ctx.refusedWith(revoked), true);
    },

    async '/session-end'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      const ended = await asUser(
        session,
        `/api/v1/auth/sessions/${encodeURIComponent(String(form.session ?? ''))}`,
        { method: 'DELETE' },
      ).catch(down);
      return ended.status === 204
        ? ctx.back(res, 'security', 'That session is signed out.')
        : ctx.back(
            res,
            'security',
            ended.status === 404 ? 'That session had already ended.' : ctx.refusedWith(ended),
            true,
          );
    },

    async '/sessions-end-others'(req, res, session) {
      if (!(await formOf(req, res, session))) return;
      /** @type {Answer<{ sessionsEnded: number }>} */
      const ended = await asUser(session, '/api/v1/auth/sessions', { method: 'DELETE' }).catch(down);
      if (ended.status !== 200) return ctx.back(res, 'security', ctx.refusedWith(ended), true);
      const n = ended.body.sessionsEnded ?? 0;
      return ctx.back(
        res,
        'security',
        `Signed out everywhere else (${n} session${n === 1 ? '' : 's'}); this one stays signed in.`,
      );
    },

    async '/preferences-save'(req, res, session) {
      const form = await formOf(req, res, session);
      if (!form) return;
      /** @type {Answer<Preferences>} */
      const saved = await asUser(session, '/api/v1/auth/me/preferences', {
        method: 'PUT',
        body: JSON.stringify({ marketingEmails: form.marketingEmails === 'yes' }),
      }).catch(down);
      if (saved.status !== 200) return ctx.back(res, 'preferences', ctx.refusedWith(saved), true);
      return ctx.back(
        res,
        'preferences',
        saved.body.marketingEmails
          ? 'Saved: you get occasional e-mails about new features and offers.'
          : 'Saved: you get no e-mails about new features and offers.',
      );
    },
  };

  /**
   * The preferences page: the opt-in to product e-mails, since when, and the words agreed to.
   * @param {Session} session
   * @param {URL} url
   */
  async function preferencesPage(session, url) {
    /** @type {Answer<Preferences>} */
    const got = await asUser(session, '/api/v1/auth/me/preferences').catch(down);
    if (got.status !== 200)
      return frame(
        session,
        'preferences',
        'Preferences',
        `<h1>Preferences</h1>${notice(ctx.refusedWith(got), 'error')}`,
      );
    const p = /** @type {Preferences} */ (got.body);
    const state = p.marketingEmails
      ? `You agreed${p.marketingEmailsSince ? ` on ${escape(when(p.marketingEmailsSince))}` : ''} to:`
      : p.marketingEmailsSince
        ? `You turned these e-mails off on ${escape(when(p.marketingEmailsSince))}.`
        : 'You have not asked for these e-mails.';
    const body = `<h1>Preferences</h1>${ctx.messageOf(url)}
<section class="card" aria-labelledby="h-mail"><h2 id="h-mail">Product e-mails</h2>
<p>${p.marketingEmails ? badge('ok', 'On') : badge('off', 'Off')} ${state}</p>
${p.marketingEmails ? `<blockquote>${escape(p.marketingEmailsWording)}</blockquote>` : ''}
<p class="muted">E-mails about your account, your services and billing are sent either way.</p>
<form method="post" action="preferences-save">${csrfOf(session)}
<div class="field"><label class="check"><input type="checkbox" name="marketingEmails" value="yes"${p.marketingEmails ? ' checked' : ''}> ${escape(p.marketingEmailsWording)}</label></div>
<button type="submit">Save</button></form></section>`;
    return frame(session, 'preferences', 'Preferences', body);
  }

  return {
    /** @type {Record<string, (session: Session, url: URL) => Promise<string>>} */
    pages: { '/security': (s, u) => securityPage(s, u), '/preferences': preferencesPage },
    forms,
  };
}
