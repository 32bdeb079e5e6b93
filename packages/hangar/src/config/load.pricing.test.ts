import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './load.ts';

const dir = mkdtempSync(join(tmpdir(), 'hangar-pricing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configWith(name: string, pricing: string): string {
  const path = join(dir, `${name}.config.mjs`);
  writeFileSync(path, `export default { agents: [], pricing: ${pricing} };\n`);
  return path;
}

describe('pricing in hangar.config.ts', () => {
  it('loads a price table by model', async () => {
    const loaded = await loadConfig(
      configWith('good', `{ 'openai:gpt-4o-mini': { inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 } }`),
    );
    expect(loaded.config.pricing).toEqual({
      'openai:gpt-4o-mini': { inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 },
    });
  });

  it('rejects a malformed price naming the model', async () => {
    const load = loadConfig(
      configWith('bad', `{ 'openai:gpt-4o': { inputPerMTokUsd: -1, outputPerMTokUsd: 2 } }`),
    );
    await expect(load).rejects.toBeInstanceOf(ConfigError);
    await expect(load).rejects.toThrow(
      'pricing["openai:gpt-4o"] must be { inputPerMTokUsd, outputPerMTokUsd }',
    );
  });
});
