import { createHash } from 'node:crypto';
import { HangarError } from '../errors.ts';
import type { Agent } from '../sdk/agent.ts';
import { json, type Queryable } from '../store/sql.ts';

/** LangGraph derives a graph's default assistant id as uuid5(NAMESPACE_URL, graph_id); so does Hangar. */
const NAMESPACE_URL = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

export function uuidv5(name: string, namespace = NAMESPACE_URL): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x50;
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export interface ResolvedAgent {
  agent: Agent;
  assistantId: string;
}

/** The agents a process loaded, and the default assistant of each. */
export class AgentRegistry {
  private readonly byAssistantId = new Map<string, Agent>();
  /** Agent name → default assistant id (a SHA-1 each: computed once, read on every run create). */
  private readonly defaultIds = new Map<string, string>();

  constructor(readonly agents: ReadonlyMap<string, Agent>) {
    for (const agent of agents.values()) {
      const id = uuidv5(agent.name);
      this.byAssistantId.set(id, agent);
      this.defaultIds.set(agent.name, id);
    }
  }

  get names(): string[] {
    return [...this.agents.keys()].sort();
  }

  defaultAssistantId(agentName: string): string {
    return this.defaultIds.get(agentName) ?? uuidv5(agentName);
  }

  /** The agent whose default assistant has this id, if it is one. */
  defaultAgentOf(assistantId: string): Agent | undefined {
    return this.byAssistantId.get(assistantId.toLowerCase());
  }

  /**
   * The agent a `graph_id` names; `agent_not_found` naming `field` (the request
   * field the graph id came from) when no such agent is configured.
   */
  agentForGraph(graphId: string, field = 'graph_id'): Agent {
    const agent = this.agents.get(graphId);
    if (agent !== undefined) return agent;
    throw new HangarError(
      'agent_not_found',
      `${field}: no agent "${graphId}" is configured; known agents: ${this.names.join(', ') || '(none)'}`,
      { details: { [field]: graphId, known_agents: this.names } },
    );
  }

  /** Resolves an assistant id or an agent name (graph id), as LangGraph's API accepts both. */
  resolve(assistantIdOrName: string): ResolvedAgent {
    const byName = this.agents.get(assistantIdOrName);
    if (byName !== undefined) return { agent: byName, assistantId: uuidv5(byName.name) };
    const byId = this.byAssistantId.get(assistantIdOrName.toLowerCase());
    if (byId !== undefined) return { agent: byId, assistantId: assistantIdOrName.toLowerCase() };
    throw this.unknownAgent(assistantIdOrName);
  }

  /** The `agent_not_found` error for a run's `assistant_id` that names nothing, listing the known agents. */
  unknownAgent(assistantIdOrName: string): HangarError {
    return new HangarError(
      'agent_not_found',
      `no agent or assistant "${assistantIdOrName}"; known agents: ${this.names.join(', ') || '(none)'}`,
      { details: { assistant_id: assistantIdOrName, known_agents: this.names } },
    );
  }

  /**
   * Makes sure every loaded agent has its default assistant in the tenant. Its
   * description follows the agent's code until the assistant is first edited
   * (an edit records versions; from then on the tenant's edits win).
   */
  async syncAssistants(db: Queryable, tenantId: string): Promise<void> {
    for (const agent of this.agents.values()) {
      await db.query(
        `INSERT INTO assistants (tenant_id, assistant_id, graph_id, name, description, metadata)
         VALUES ($1, $2, $3, $3, $4, $5::jsonb)
         ON CONFLICT (tenant_id, assistant_id) DO UPDATE SET description = EXCLUDED.description
         WHERE NOT EXISTS (SELECT 1 FROM assistant_versions v
                           WHERE v.tenant_id = assistants.tenant_id AND v.assistant_id = assistants.assistant_id)`,
        [tenantId, uuidv5(agent.name), agent.name, agent.description ?? null, json({ created_by: 'system' })],
      );
    }
  }
}
