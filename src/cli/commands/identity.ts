import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { DomainError } from '../../core/errors.ts';
import { commandContext, withDatabase } from '../context.ts';
import { EXIT } from '../exit.ts';
import { printJson } from '../output.ts';

type Action = <A extends unknown[]>(fn: (...args: A) => Promise<unknown>) => (...args: A) => Promise<void>;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').trim();
}

/**
 * What the commands run, imported when one runs: registering them costs no
 * identity module (jose, the secret box) in every other command's process.
 */
const load = {
  audit: () => import('../../identity/audit-verify.ts'),
  masterKey: () => import('../../identity/master-key.ts'),
  rotate: () => import('../../identity/rotate-master-key.ts'),
  tokens: () => import('../../identity/tokens.ts'),
};

/** `aiqso audit …` and `aiqso secrets …`. */
export function identityCommands(program: Command, action: Action): void {
  const audit = program.command('audit').description('the tamper-evident audit log');
  audit
    .command('verify')
    .description(
      'check the audit log hash chain and its head; names the first row that was edited, follows a deleted one, or is missing at the end',
    )
    .option(
      '--expect <id:hash>',
      'also require this earlier head (as printed by a previous verify and kept outside the database) to still be in the chain',
    )
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 the chain is intact up to its head (and --expect holds); 1 tampering found (the report names the row), or the check could not run (message on stderr); 2 bad usage (e.g. a malformed --expect).',
    )
    .action(
      action(async (options: { json?: boolean; expect?: string }) => {
        const { describeReport, parseAnchor, verifyAuditChain } = await load.audit();
        const anchor = options.expect === undefined ? undefined : parseAnchor(options.expect);
        const ctx = commandContext({ quiet: true });
        const report = await withDatabase(ctx, (database) => verifyAuditChain(database.db, { anchor }));
        if (options.json) printJson(report);
        else process.stdout.write(`${describeReport(report)}\n`);
        if (!report.ok) process.exitCode = EXIT.failure;
      }),
    );

  const secrets = program.command('secrets').description('secrets at rest and token signing keys');
  secrets
    .command('rotate-key')
    .description(
      'generate a new master key and re-encrypt every stored secret with it (with AIQSO_MASTER_KEY set: read the new key from stdin, then set AIQSO_MASTER_KEY to it)',
    )
    .option('--new-key-stdin', 'read the new key (32 bytes, base64) from stdin instead of generating one')
    .option('--json', 'print the result as JSON')
    .action(
      action(async (options: { json?: boolean; newKeyStdin?: boolean }) => {
        const ctx = commandContext({ quiet: true });
        const { config } = ctx;
        if (config.masterKey && !options.newKeyStdin) {
          throw new DomainError(
            'bad_request',
            'AIQSO_MASTER_KEY is set: pass --new-key-stdin and pipe the new key in',
          );
        }
        const newKey = options.newKeyStdin ? await readStdin() : undefined;
        const { keyFile, loadSecretBox } = await load.masterKey();
        const { rotateMasterKey } = await load.rotate();
        const result = await withDatabase(ctx, async (database) => {
          // Make sure a file key exists (and any half-finished rotation is settled) before rotating it.
          await loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir });
          const currentFileKey = config.masterKey
            ? undefined
            : await readFile(keyFile(config.dataDir), 'utf8');
          return rotateMasterKey(database.db, {
            dataDir: config.dataDir,
            configured: config.masterKey,
            currentFileKey,
            newKey,
          });
        });
        if (options.json) return printJson(result);
        process.stdout.write(
          `master key rotated to ${result.keyId}; ${result.resealed} secrets re-encrypted\n`,
        );
        if (result.mode === 'configured')
          process.stdout.write('now set AIQSO_MASTER_KEY to the new key and restart\n');
      }),
    );
  secrets
    .command('rotate-signing-key')
    .description(
      'add a new access-token signing key and retire the others (they verify until their tokens expire)',
    )
    .option('--json', 'print the new key id as JSON')
    .action(
      action(async (options: { json?: boolean }) => {
        const ctx = commandContext({ quiet: true });
        const { loadSecretBox } = await load.masterKey();
        const { addSigningKey } = await load.tokens();
        const kid = await withDatabase(ctx, async (database) =>
          addSigningKey(
            database.db,
            await loadSecretBox({ configured: ctx.config.masterKey, dataDir: ctx.config.dataDir }),
          ),
        );
        if (options.json) return printJson({ kid });
        process.stdout.write(`new signing key ${kid}; running API processes pick it up within a minute\n`);
      }),
    );
}
