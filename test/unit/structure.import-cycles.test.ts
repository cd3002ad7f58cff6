// The import-cycle check `npm run check` runs: it finds file and package cycles (type-only imports
// included), and src/ has none.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  fileCycles,
  importGraph,
  layerViolations,
  packageCycles,
  packageOf,
} from '../../scripts/import-graph.ts';

const repo = path.join(import.meta.dirname, '../..');
const tsConfig = path.join(repo, 'tsconfig.json');

describe('package cycles', () => {
  it('names a file by its first directory, or its stem at the root', () => {
    expect(packageOf('edge/auth/verifier.ts')).toBe('edge');
    expect(packageOf('version.ts')).toBe('version');
  });

  it('finds a cycle through packages with no file cycle, and shows the file edges that make it', () => {
    const cycles = packageCycles({
      'api/server.ts': ['identity/tokens.ts', 'core/errors.ts'],
      'identity/tokens.ts': ['core/errors.ts'],
      'identity/routes.ts': ['api/types.ts'],
      'api/types.ts': [],
      'core/errors.ts': [],
    });
    expect(cycles).toEqual([
      {
        members: ['api', 'identity'],
        edges: [
          { from: 'api', to: 'identity', via: 'api/server.ts → identity/tokens.ts' },
          { from: 'identity', to: 'api', via: 'identity/routes.ts → api/types.ts' },
        ],
      },
    ]);
  });

  it('accepts layers that only point down, and a cycle inside one package (a file cycle, reported apart)', () => {
    expect(
      packageCycles({
        'cli/main.ts': ['api/server.ts', 'core/errors.ts'],
        'api/server.ts': ['api/errors.ts', 'core/errors.ts'],
        'api/errors.ts': ['api/server.ts'],
        'core/errors.ts': [],
      }),
    ).toEqual([]);
  });
});

describe('layering', () => {
  it('keeps core free of other packages, and platform for cli alone', () => {
    expect(
      layerViolations({
        'core/tenants.ts': ['core/errors.ts', 'db/tables.ts'],
        'lifecycle/signup.ts': ['platform/api.ts', 'core/tenants.ts'],
        'cli/commands/up.ts': ['platform/platform.ts'],
        'platform/platform.ts': ['platform/api.ts', 'lifecycle/signup.ts'],
      }),
    ).toEqual([
      'core imports db: core/tenants.ts → db/tables.ts',
      'only cli imports platform: lifecycle/signup.ts → platform/api.ts',
    ]);
  });
});

describe('file cycles', () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('counts a type-only import back as a cycle', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-cycles-'));
    await mkdir(path.join(dir, 'a'));
    await mkdir(path.join(dir, 'b'));
    await writeFile(
      path.join(dir, 'a', 'one.ts'),
      "import { two } from '../b/two.ts';\nexport const one = two;\n",
    );
    await writeFile(
      path.join(dir, 'b', 'two.ts'),
      "import type { Shape } from '../a/shape.ts';\nexport const two: Shape = { n: 2 };\n",
    );
    await writeFile(
      path.join(dir, 'a', 'shape.ts'),
      "import type { two } from '../b/two.ts';\nexport interface Shape { n: number }\nexport type Two = typeof two;\n",
    );
    const graph = await importGraph(dir, tsConfig);
    expect(fileCycles(graph)).toEqual([
      {
        members: ['a/shape.ts', 'b/two.ts'],
        edges: [
          { from: 'a/shape.ts', to: 'b/two.ts', via: 'a/shape.ts → b/two.ts' },
          { from: 'b/two.ts', to: 'a/shape.ts', via: 'b/two.ts → a/shape.ts' },
        ],
      },
    ]);
    expect(packageCycles(graph).map((c) => c.members)).toEqual([['a', 'b']]);
  });
});

describe('src/', () => {
  it('has no import cycle between files or packages, and keeps the layering', async () => {
    const graph = await importGraph(path.join(repo, 'src'), tsConfig);
    expect(Object.keys(graph).length).toBeGreaterThan(100);
    expect(fileCycles(graph)).toEqual([]);
    expect(packageCycles(graph)).toEqual([]);
    expect(layerViolations(graph)).toEqual([]);
  });
});
