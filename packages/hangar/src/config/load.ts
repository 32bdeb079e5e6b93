import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Agent, isAgent } from '../sdk/agent.ts';
import type { ModelPricing, ModelSpec } from '../sdk/llm.ts';

/**
 * `hangar.config.ts`.
 *
 * @example
 * export default { agents: ['./agents/greeter.ts'], llm: { model: 'openai:gpt-4o-mini' } };
 */
export interface HangarConfig {
  /** Agent modules (paths relative to the config file; their default export or any exported agent) or agents. */
  agents: Array<string | Agent>;
  llm?: { model?: ModelSpec; baseURL?: string };
  /**
   * USD per million tokens by model (`"openai:gpt-4o-mini"`), for the
   * `maxCostUsd` budget (docs/agents.md). A model missing here costs nothing.
   */
  pricing?: ModelPricing;
  /** Largest accepted request body, in bytes (default 1 MiB). */
  bodyLimitBytes?: number;
}

export function defineConfig(config: HangarConfig): HangarConfig {
  return config;
}

export interface LoadedConfig {
  path: string;
  config: HangarConfig;
  agents: Map<string, Agent>;
}

/** A configuration problem, reported by the CLI as one line (no stack). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Loads a config file (TypeScript or JavaScript, no build step) and the agents it names. */
export async function loadConfig(configPath: string): Promise<LoadedConfig> {
  const path = resolve(configPath);
  if (!existsSync(path)) throw new ConfigError(`config file ${path} not found (pass --config <file>)`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`could not load config file ${path}: ${describe(err)}`);
  }
  const config = (mod.default ?? mod.config) as HangarConfig | undefined;
  if (typeof config !== 'object' || config === null || !Array.isArray(config.agents)) {
    throw new ConfigError(`config file ${path} must export default an object with an "agents" array`);
  }
  const agents = new Map<string, Agent>();
  const add = (agent: Agent, source: string) => {
    const existing = agents.get(agent.name);
    if (existing !== undefined && existing !== agent) {
      throw new ConfigError(
        `config file ${path}: two agents are named "${agent.name}" (the second in ${source})`,
      );
    }
    agents.set(agent.name, agent);
  };
  for (const entry of config.agents) {
    if (isAgent(entry)) {
      add(entry, path);
      continue;
    }
    if (typeof entry !== 'string') {
      throw new ConfigError(
        `config file ${path}: each "agents" entry must be a module path or a defineAgent() value`,
      );
    }
    const modulePath = resolve(dirname(path), entry);
    if (!existsSync(modulePath))
      throw new ConfigError(`config file ${path}: agent module ${modulePath} not found`);
    let agentModule: Record<string, unknown>;
    try {
      agentModule = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`could not load agent module ${modulePath}: ${describe(err)}`);
    }
    const found = Object.values(agentModule).filter(isAgent);
    if (found.length === 0) {
      throw new ConfigError(
        `agent module ${modulePath} exports no agent (export default defineAgent({...}))`,
      );
    }
    for (const agent of new Set(found)) add(agent, modulePath);
  }
  checkPricing(path, config.pricing);
  return { path, config, agents };
}

function checkPricing(path: string, pricing: unknown): void {
  if (pricing === undefined) return;
  const valid = (n: unknown) => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  if (typeof pricing !== 'object' || pricing === null || Array.isArray(pricing)) {
    throw new ConfigError(`config file ${path}: "pricing" must map model names to prices`);
  }
  for (const [model, price] of Object.entries(pricing)) {
    const p = price as { inputPerMTokUsd?: unknown; outputPerMTokUsd?: unknown } | null;
    if (p === null || typeof p !== 'object' || !valid(p.inputPerMTokUsd) || !valid(p.outputPerMTokUsd)) {
      throw new ConfigError(
        `config file ${path}: pricing["${model}"] must be { inputPerMTokUsd, outputPerMTokUsd } (USD per million tokens)`,
      );
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.message.split('\n')[0] ?? err.message) : String(err);
}
