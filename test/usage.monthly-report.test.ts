import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPlans, PLANS_FILE } from '../src/catalog/plans.ts';
import type { Metric } from '../src/core/usage.ts';
import { newId } from '../src/core/ids.ts';
import { filesMailer } from '../src/mail/files.ts';
import { createLogger } from '../src/observability/logger.ts';
import { alertHandler, emailHandler } from '../src/orchestrator/mail-handlers.ts';
import { SCHEDULES } from '../src/orchestrator/schedules.ts';
import { addHours } from '../src/usage/metrics.ts';
import { previousMonth, warnPlanAllowances } from '../src/usage/monthly.ts';
import { usageReportsScheduleHandler } from '../src/usage/schedule.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * The monthly usage report: on the 1st (in the platform's time zone) each
 * owner gets last month's usage against the plan with the hourly rows as CSV,
 * the operator one summary whose totals are the sums of the tenants'; a second
 * firing (a restart on the 1st, a second worker) sends nothing twice. And the
 * owners' warnings at 80% and 100% of what the plan includes.
 */
const TZ = 'Europe/Berlin';
// November 2031 in Berlin: 2031-10-31T23:00Z to 2031-11-30T23:00Z.
const NOV_START = new Date('2031-10-31T23:00:00Z');
const log = createLogger('silent');
let h: Harness;
let notesA: string;
let mailDir: string;
const plans = loadPlans(PLANS_FILE);

async function put(
  tenantId: string,
  service: string | null,
  metric: Metric,
  hour: Date,
  value: number | null,
) {
  await h.db.db
    .insertInto('usage_metrics')
    .values({ tenant_id: tenantId, tenant_service_id: service, metric, period_start: hour, value })
    .execute();
}

/** Deliver the pending outbox items whose key starts with `prefix`, as the worker does, into `mailDir`. */
async function deliver(prefix: string): Promise<void> {
  const mailer = filesMailer(mailDir);
  const from = { address: 'noreply@aiqso.test' };
  const handlers = { email: emailHandler(mailer, from), alert: alertHandler(mailer, from) };
  const rows = await h.db.db
    .selectFrom('outbox')
    .selectAll()
    .where('key', 'like', `${prefix}%`)
    .where('status', '=', 'pending')
    .execute();
  for (const row of rows) {
    await h.db.db.transaction().execute(async (trx) => {
      await handlers[row.kind as 'email' | 'alert'](
        { key: row.key, kind: row.kind, payload: row.payload },
        trx,
      );
      await trx.updateTable('outbox').set({ status: 'delivered' }).where('id', '=', row.id).execute();
    });
  }
}

/** The attachment of an .eml written by the files driver, decoded. */
function attachment(eml: string): { filename: string; content: string } {
  const part = /Content-Disposition: attachment;\s*filename=("?)([^"\r\n]+)\1\r\n\r\n([\s\S]*?)\r\n--/i.exec(
    eml.replace(/Content-Transfer-Encoding: base64\r\n/g, ''),
  );
  if (!part) throw new Error('no attachment in the message');
  return {
    filename: part[2]!,
    content: Buffer.from(part[3]!.replace(/\s+/g, ''), 'base64').toString('utf8'),
  };
}

async function mails(): Promise<string[]> {
  const names = (await readdir(mailDir)).filter((n) => n.endsWith('.eml')).sort();
  return Promise.all(names.map((n) => readFile(path.join(mailDir, n), 'utf8')));
}

beforeAll(async () => {
  h = await createHarness({ env: { AIQSO_TIMEZONE: TZ } });
  mailDir = path.join(h.dataDir, 'mail');
  const serviceId = newId('service');
  notesA = newId('tenantService');
  await h.db.db
    .insertInto('services')
    .values({ id: serviceId, key: 'notes', name: 'Notes', kind: 'app', template: '{}' })
    .execute();
  await h.db.db
    .insertInto('tenant_services')
    .values({ id: notesA, tenant_id: h.a.id, service_id: serviceId, status: 'active' })
    .execute();
  await h.db.db.updateTable('tenants').set({ status: 'active' }).execute();
  // Every hour of November in Berlin (720 hours), plus one hour on each side that must not count.
  const hours = Array.from({ length: 720 }, (_, i) => addHours(NOV_START, i));
  for (const hour of [addHours(NOV_START, -1), ...hours, addHours(NOV_START, 720)]) {
    const inside = hour >= NOV_START && hour < addHours(NOV_START, 720);
    await put(h.a.id, notesA, 'cpu_seconds', hour, inside ? 36 : 100_000);
    await put(h.a.id, notesA, 'disk_bytes', hour, 2e9);
    await put(h.a.id, notesA, 'db_bytes', hour, 1e9);
    await put(h.a.id, null, 'requests', hour, inside ? 100 : 100_000);
    await put(h.b.id, null, 'requests', hour, inside ? 7 : 100_000);
  }
}, 120_000);

afterAll(async () => {
  await h?.close();
});

describe('monthly usage report', () => {
  it('runs at 06:00 on the 1st in the platform time zone, for the month before', () => {
    expect(SCHEDULES.find((s) => s.name === 'usage-reports')).toMatchObject({ cron: '0 6 1 * *' });
    // 06:00 on 1 December in Berlin is 05:00 UTC; 00:30 on 1 January in Berlin is still December in UTC.
    expect(previousMonth(new Date('2031-12-01T05:00:00Z'), TZ)).toBe('2031-11');
    expect(previousMonth(new Date('2031-12-31T23:30:00Z'), TZ)).toBe('2031-12');
    expect(previousMonth(new Date('2032-01-01T05:00:00Z'), TZ)).toBe('2031-12');
  });

  it('mails each owner once with the month against the plan and a CSV, and the operator a summary of the sums', async () => {
    const firing = { name: 'usage-reports', firedAt: new Date('2031-12-01T05:00:00Z'), backfilled: false };
    const deps = { db: h.db.db, timeZone: TZ, plans, log };
    await usageReportsScheduleHandler(deps)(firing);
    // A restart on the 1st: the firing is backfilled and runs again with a new worker's parts.
    await usageReportsScheduleHandler({ ...deps })({ ...firing, backfilled: true });
    const queued = await h.db.db
      .selectFrom('outbox')
      .select(['key', 'kind'])
      .where('key', 'like', 'usage-%')
      .orderBy('key')
      .execute();
    expect(queued.map((q) => q.key).sort()).toEqual(
      [`usage-report:${h.a.id}:2031-11`, `usage-report:${h.b.id}:2031-11`, 'usage-summary:2031-11'].sort(),
    );
    await deliver('usage-');
    await deliver('usage-'); // Nothing left to send twice.
    // One usage.report event per tenant for webhooks, however often the firing ran.
    const events = await h.db.db
      .selectFrom('webhook_events')
      .select(['tenant_id', 'data'])
      .where('type', '=', 'usage.report')
      .execute();
    expect(events.map((e) => e.tenant_id).sort()).toEqual([h.a.id, h.b.id].sort());
    const eventA = events.find((e) => e.tenant_id === h.a.id)!.data as {
      month: string;
      usage: { requests: number };
    };
    expect(eventA.month).toBe('2031-11');
    expect(eventA.usage.requests).toBe(72_000);

    const sent = await h.db.db
      .selectFrom('emails')
      .select(['recipient', 'template', 'tenant_id', 'subject'])
      .where('template', 'in', ['usage-report', 'usage-summary'])
      .execute();
    expect(
      sent
        .filter((s) => s.template === 'usage-report')
        .map((s) => s.recipient)
        .sort(),
    ).toEqual([h.a.owner.email, h.b.owner.email].sort());
    const summaryRow = sent.find((s) => s.template === 'usage-summary')!;
    expect(summaryRow.recipient).toBe(h.admin.email);
    expect(summaryRow.subject).toBe('Usage in November 2031: 2 tenant(s)');

    const all = await mails();
    const forA = all.find((m) => m.includes(`To: ${h.a.owner.email}`))!;
    expect(forA).toContain('Subject: Your usage in November 2031');
    // 720 hours x 100 requests of the 1,000,000 the Starter plan includes; 3 GB stored of 10.
    const textA = forA.replace(/=\r\n/g, '');
    expect(textA).toContain('Requests: 72,000 of 1,000,000 requests included (7%)');
    expect(textA).toContain('Storage: 3 of 10 GB included (30%)');
    expect(textA).toContain('CPU: 7.2 hours');
    const csvA = attachment(forA);
    expect(csvA.filename).toBe(`usage-${h.a.slug}-2031-11.csv`);
    expect(csvA.content.split('\r\n')[0]).toBe('tenant,service,metric,period,value,hours,gapHours');
    expect(csvA.content).toContain(`${h.a.slug},,requests,2031-10-31T23:00:00.000Z,72000,720,0`);
    expect(csvA.content).toContain(`${h.a.slug},notes,cpu_seconds,2031-10-31T23:00:00.000Z,25920,720,0`);
    expect(csvA.content).not.toContain(h.b.slug);

    const summary = all.find((m) => m.includes('Subject: Usage in November 2031'))!;
    const lines = attachment(summary).content.trim().split('\r\n');
    expect(lines[0]).toBe('tenant,plan,cpu_hours,storage_gb,requests,mails_sent,gap_hours');
    const byTenant: Record<string, string[]> = Object.fromEntries(
      lines.slice(1).map((l) => [l.split(',')[0]!, l.split(',')]),
    );
    expect(byTenant[h.a.slug]!.slice(2, 6).map(Number)).toEqual([7.2, 3, 72_000, 0]);
    expect(byTenant[h.b.slug]!.slice(2, 6).map(Number)).toEqual([0, 0, 5_040, 0]);
    const sums = [2, 3, 4, 5].map((i) => Number(byTenant[h.a.slug]![i]) + Number(byTenant[h.b.slug]![i]));
    expect(byTenant.TOTAL!.slice(2, 6).map(Number)).toEqual(sums);
  });

  it('warns an owner once at 80% and once at 100% of the requests the plan includes', async () => {
    const now = new Date('2031-12-10T12:00:00Z');
    const deps = { db: h.db.db, timeZone: TZ, plans, log };
    // December so far: 850,000 requests of the Starter plan's 1,000,000.
    await put(h.a.id, null, 'requests', new Date('2031-12-05T10:00:00Z'), 750_000);
    expect(await warnPlanAllowances(deps, now)).toBe(1);
    expect(await warnPlanAllowances(deps, now)).toBe(0);
    await put(h.a.id, null, 'requests', new Date('2031-12-06T10:00:00Z'), 200_000);
    expect(await warnPlanAllowances(deps, now)).toBe(1);
    expect(await warnPlanAllowances(deps, now)).toBe(0);
    const warnings = await h.db.db
      .selectFrom('outbox')
      .select(['key', 'payload'])
      .where('key', 'like', 'usage-warning:%')
      .orderBy('key')
      .execute();
    // Tenant b (7 requests an hour) and the 3 GB of storage stay under 80%: no warning for them.
    expect(warnings.map((w) => w.key)).toEqual([
      `usage-warning:${h.a.id}:2031-12:requests:100`,
      `usage-warning:${h.a.id}:2031-12:requests:80`,
    ]);
    const payload = warnings[1]!.payload as { to: string; subject: string; text: string };
    expect(payload.to).toBe(h.a.owner.email);
    expect(payload.subject).toBe(`Your workspace ${h.a.slug} has used 80% of its requests this month`);
    expect(payload.text).toContain('Nothing is switched off');
  });
});
