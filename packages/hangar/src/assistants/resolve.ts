import { HangarError } from '../errors.ts';
import type { Agent } from '../sdk/agent.ts';
import type { Queryable } from '../store/sql.ts';
import type { AgentRegistry } from './registry.ts';
import { type Assistant, getAssistant } from './repository.ts';

/**
 * Assistants as run creates read them, kept for `ttlMs` (default 1 s) so a
 * create does not pay a round trip for them. Writes through this gateway
 * invalidate at once; another gateway's write is seen within the TTL.
 */
export class AssistantCache {
  private readonly entries = new Map<string, { at: number; value: Promise<Assistant | null> }>();

  constructor(private readonly ttlMs = 1_000) {}

  get(db: Queryable, tenantId: string, assistantId: string): Promise<Assistant | null> {
    const key = `${tenantId}\u0000${assistantId}`;
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit !== undefined && now - hit.at < this.ttlMs) return hit.value;
    if (this.entries.size > 10_000) this.entries.clear();
    const value = getAssistant(db, tenantId, assistantId);
    this.entries.set(key, { at: now, value });
    value.catch(() => this.entries.delete(key));
    return value;
  }

  invalidate(tenantId: string, assistantId: string): void {
    this.entries.delete(`${tenantId}\u0000${assistantId}`);
  }
}

/** The agent a run executes, the assistant it was created with, and the config it is stored with. */
export interface ResolvedAssistant {
  agent: Agent;
  assistantId: string;
  /** The assistant's config with the run's merged over it (`mergeConfig`). */
  config: Record<string, unknown>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type PlainObject = Record<string, unknown>;
const isPlainObject = (v: unknown): v is PlainObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A run's config over its assistant's: the run wins key by key, and one level
 * deeper for keys both hold as objects (`configurable`, `metadata`), so a run
 * that sets one `configurable` key keeps the assistant's others.
 *
 * @example
 * mergeConfig({ tags: ['a'], configurable: { model: 'x', tone: 'dry' } }, { configurable: { tone: 'warm' } });
 * // → { tags: ['a'], configurable: { model: 'x', tone: 'warm' } }
 */
export function mergeConfig(assistant: PlainObject, run: PlainObject | undefined): PlainObject {
  const merged: PlainObject = { ...assistant, ...run };
  for (const [key, value] of Object.entries(run ?? {})) {
    const base = assistant[key];
    if (isPlainObject(base) && isPlainObject(value)) merged[key] = { ...base, ...value };
  }
  return merged;
}

/**
 * Resolves a run's `assistant_id` in the tenant, as LangGraph does:
 *
 * - an agent name (graph id) → that agent's default assistant;
 * - an assistant id of the tenant → the agent its `graph_id` names, with its config;
 * - a default assistant id with no row in the tenant (a tenant whose defaults
 *   were never written) → the agent, with an empty config.
 *
 * `not_found` for any other uuid (unknown, deleted, or another tenant's),
 * `agent_not_found` for any other name or when the assistant's graph is not
 * configured in this process.
 *
 * @example
 * const { agent, assistantId, config } = await resolveAssistant(deps, 'default', 'greeter', { configurable: { x: 1 } });
 */
export async function resolveAssistant(
  deps: { db: Queryable; registry: AgentRegistry; assistantCache?: AssistantCache },
  tenantId: string,
  assistantIdOrName: string,
  runConfig?: PlainObject,
): Promise<ResolvedAssistant> {
  const { db, registry } = deps;
  const byName = registry.agents.get(assistantIdOrName);
  if (byName === undefined && !UUID.test(assistantIdOrName)) throw registry.unknownAgent(assistantIdOrName);
  const assistantId =
    byName === undefined ? assistantIdOrName.toLowerCase() : registry.defaultAssistantId(byName.name);
  const assistant =
    deps.assistantCache === undefined
      ? await getAssistant(db, tenantId, assistantId)
      : await deps.assistantCache.get(db, tenantId, assistantId);
  if (assistant === null) {
    const agent = byName ?? registry.defaultAgentOf(assistantId);
    if (agent === undefined) {
      throw new HangarError('not_found', `assistant ${assistantId} not found`, {
        details: { assistant_id: assistantId },
      });
    }
    return { agent, assistantId, config: mergeConfig({}, runConfig) };
  }
  const agent = registry.agents.get(assistant.graph_id);
  if (agent === undefined) {
    throw new HangarError(
      'agent_not_found',
      `assistant ${assistantId} runs agent "${assistant.graph_id}", which is not configured; known agents: ${registry.names.join(', ') || '(none)'}`,
      { details: { assistant_id: assistantId, graph_id: assistant.graph_id, known_agents: registry.names } },
    );
  }
  return { agent, assistantId, config: mergeConfig(assistant.config, runConfig) };
}
