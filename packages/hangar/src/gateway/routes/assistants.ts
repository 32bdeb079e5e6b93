import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import {
  type Assistant,
  countAssistants,
  createAssistant,
  deleteAssistant,
  getAssistant,
  listAssistantVersions,
  searchAssistants,
  setLatestVersion,
  updateAssistant,
} from '../../assistants/repository.ts';
import {
  AssistantCountBody,
  AssistantCreateBody,
  AssistantDeleteQuery,
  AssistantGraphQuery,
  AssistantLatestBody,
  AssistantPatchBody,
  AssistantSubgraphParams,
  AssistantVersionsBody,
} from '../../assistants/schemas.ts';
import { HangarError } from '../../errors.ts';
import { agentJsonSchemas } from '../../sdk/agent.ts';
import type { GatewayDeps } from '../app.ts';
import { parseWith } from '../errors.ts';
import { AgentParams, AgentSearchBody, AssistantParams, AssistantSearchBody } from '../schemas.ts';

/**
 * Assistants: LangGraph's `/assistants/*` (create, get, search, count, update
 * as a new version, versions, set latest, delete, schemas, graph) and the Agent
 * Protocol's read-only `/agents/*`, all over the `assistants` table.
 *
 * Every configured agent has a default assistant (id = uuid5 of its name). It
 * can be updated like any other (runs by agent name then use its config), but
 * not moved to another graph nor deleted (`409 conflict`): runs that name the
 * agent must always find it.
 */
export function registerAssistantRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  async function findAssistant(tenantId: string, assistantId: string): Promise<Assistant> {
    return (await getAssistant(deps.db, tenantId, assistantId)) ?? notFound(assistantId);
  }

  /** The JSON Schemas of the agent behind an assistant; `agent_not_found` if this process lacks it. */
  function schemasOf(assistant: Assistant): { input: unknown; output: unknown } {
    return agentJsonSchemas(deps.registry.resolve(assistant.graph_id).agent);
  }

  app.get('/assistants/:assistant_id', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    return findAssistant(deps.tenantOf(request), assistant_id);
  });

  app.post('/assistants/search', async (request) => {
    const body = parseWith(AssistantSearchBody, request.body ?? {}, '');
    return searchAssistants(deps.db, deps.tenantOf(request), {
      limit: body.limit,
      offset: body.offset,
      ...(body.graph_id === undefined ? {} : { graphId: body.graph_id }),
      ...(body.name === undefined ? {} : { name: body.name }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
      ...(body.sort_by === undefined ? {} : { sortBy: body.sort_by }),
      ...(body.sort_order === undefined ? {} : { sortOrder: body.sort_order }),
    });
  });

  app.get('/assistants/:assistant_id/schemas', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    const assistant = await findAssistant(deps.tenantOf(request), assistant_id);
    const { input, output } = schemasOf(assistant);
    return {
      graph_id: assistant.graph_id,
      input_schema: input,
      output_schema: output,
      state_schema: null,
      config_schema: null,
      context_schema: null,
    };
  });

  /** The agent whose default assistant this id is, when it is one and names another graph. */
  function refuseMovingDefault(assistantId: string, graphId: string | undefined | null): void {
    const owner = deps.registry.defaultAgentOf(assistantId);
    if (owner === undefined || graphId == null || graphId === owner.name) return;
    throw new HangarError(
      'conflict',
      `assistant ${assistantId} is the default assistant of agent "${owner.name}": its graph_id cannot change`,
      { details: { assistant_id: assistantId, graph_id: owner.name } },
    );
  }

  app.post('/assistants', async (request) => {
    const body = parseWith(AssistantCreateBody, request.body ?? {}, '');
    deps.registry.agentForGraph(body.graph_id);
    const assistantId = body.assistant_id?.toLowerCase() ?? randomUUID();
    const owner = deps.registry.defaultAgentOf(assistantId);
    if (owner !== undefined && owner.name !== body.graph_id) {
      const message = `reserved for the default assistant of agent "${owner.name}"`;
      throw new HangarError('invalid_request', `invalid request: assistant_id: ${message}`, {
        details: { issues: [{ path: 'assistant_id', message }] },
      });
    }
    const { assistant } = await createAssistant(
      deps.db,
      deps.tenantOf(request),
      assistantId,
      {
        graphId: body.graph_id,
        name: body.name ?? body.graph_id,
        description: body.description ?? null,
        config: body.config ?? {},
        context: body.context ?? {},
        metadata: body.metadata ?? {},
      },
      body.if_exists ?? 'raise',
    );
    deps.assistantCache?.invalidate(deps.tenantOf(request), assistant.assistant_id);
    return assistant;
  });

  app.patch('/assistants/:assistant_id', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    const body = parseWith(AssistantPatchBody, request.body ?? {}, '');
    if (body.graph_id != null) deps.registry.agentForGraph(body.graph_id);
    refuseMovingDefault(assistant_id, body.graph_id);
    const updated = await updateAssistant(deps.db, deps.tenantOf(request), assistant_id, {
      ...(body.graph_id == null ? {} : { graphId: body.graph_id }),
      ...(body.name == null ? {} : { name: body.name }),
      ...(body.description === undefined ? {} : { description: body.description }),
      ...(body.config == null ? {} : { config: body.config }),
      ...(body.context == null ? {} : { context: body.context }),
      ...(body.metadata == null ? {} : { metadata: body.metadata }),
    });
    deps.assistantCache?.invalidate(deps.tenantOf(request), assistant_id);
    return updated ?? notFound(assistant_id);
  });

  app.delete('/assistants/:assistant_id', async (request, reply) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    parseWith(AssistantDeleteQuery, request.query ?? {}, 'query');
    const owner = deps.registry.defaultAgentOf(assistant_id);
    if (owner !== undefined) {
      throw new HangarError(
        'conflict',
        `assistant ${assistant_id} is the default assistant of agent "${owner.name}" and cannot be deleted; update it instead`,
        { details: { assistant_id, graph_id: owner.name } },
      );
    }
    const deleted = await deleteAssistant(deps.db, deps.tenantOf(request), assistant_id);
    deps.assistantCache?.invalidate(deps.tenantOf(request), assistant_id);
    if (!deleted) notFound(assistant_id);
    return reply.status(204).send();
  });

  app.post('/assistants/:assistant_id/versions', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    const body = parseWith(AssistantVersionsBody, request.body ?? {}, '');
    const versions = await listAssistantVersions(deps.db, deps.tenantOf(request), assistant_id, {
      limit: body.limit,
      offset: body.offset,
      ...(body.metadata == null ? {} : { metadata: body.metadata }),
    });
    return versions ?? notFound(assistant_id);
  });

  app.post('/assistants/:assistant_id/latest', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    const { version } = parseWith(AssistantLatestBody, request.body ?? {}, '');
    const assistant = await setLatestVersion(deps.db, deps.tenantOf(request), assistant_id, version);
    deps.assistantCache?.invalidate(deps.tenantOf(request), assistant_id);
    return assistant ?? notFound(assistant_id);
  });

  app.post('/assistants/count', async (request) => {
    const body = parseWith(AssistantCountBody, request.body ?? {}, '');
    return countAssistants(deps.db, deps.tenantOf(request), {
      ...(body.graph_id == null ? {} : { graphId: body.graph_id }),
      ...(body.name == null ? {} : { name: body.name }),
      ...(body.metadata == null ? {} : { metadata: body.metadata }),
    });
  });

  // A Hangar agent is one durable function, not a graph of nodes: its graph is
  // start → agent → end, and it has no subgraphs.
  app.get('/assistants/:assistant_id/graph', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    parseWith(AssistantGraphQuery, request.query ?? {}, 'query');
    const assistant = await findAssistant(deps.tenantOf(request), assistant_id);
    const agent = deps.registry.agentForGraph(assistant.graph_id).name;
    return {
      nodes: [
        { id: '__start__', type: 'schema', data: '__start__' },
        { id: agent, type: 'runnable', data: { id: ['hangar', 'agent', agent], name: agent } },
        { id: '__end__', type: 'schema', data: '__end__' },
      ],
      edges: [
        { source: '__start__', target: agent },
        { source: agent, target: '__end__' },
      ],
    };
  });

  app.get('/assistants/:assistant_id/subgraphs', async (request) => {
    const { assistant_id } = parseWith(AssistantParams, request.params, 'path');
    await findAssistant(deps.tenantOf(request), assistant_id);
    return {};
  });

  app.get('/assistants/:assistant_id/subgraphs/:namespace', async (request) => {
    const { assistant_id } = parseWith(AssistantSubgraphParams, request.params, 'path');
    await findAssistant(deps.tenantOf(request), assistant_id);
    return {};
  });

  app.post('/agents/search', async (request) => {
    const body = parseWith(AgentSearchBody, request.body ?? {}, '');
    const assistants = await searchAssistants(deps.db, deps.tenantOf(request), {
      limit: body.limit,
      offset: body.offset,
      ...(body.name === undefined ? {} : { name: body.name }),
      ...(body.metadata === undefined ? {} : { metadata: body.metadata }),
    });
    return assistants.map(toAgent);
  });

  app.get('/agents/:agent_id', async (request) => {
    const { agent_id } = parseWith(AgentParams, request.params, 'path');
    return toAgent(await findAssistant(deps.tenantOf(request), agent_id));
  });

  app.get('/agents/:agent_id/schemas', async (request) => {
    const { agent_id } = parseWith(AgentParams, request.params, 'path');
    const assistant = await findAssistant(deps.tenantOf(request), agent_id);
    const { input, output } = schemasOf(assistant);
    // The spec requires `output_schema` to be an object; `{}` is the schema that accepts any output.
    return { agent_id: assistant.assistant_id, input_schema: input, output_schema: output ?? {} };
  });
}

function notFound(assistantId: string): never {
  throw new HangarError('not_found', `assistant ${assistantId} not found`, {
    details: { assistant_id: assistantId },
  });
}

/** An assistant as an Agent Protocol `Agent`. */
function toAgent(assistant: Assistant) {
  return {
    agent_id: assistant.assistant_id,
    name: assistant.name,
    ...(assistant.description === null ? {} : { description: assistant.description }),
    metadata: assistant.metadata,
    // Every run streams its events over SSE; agents take arbitrary input, not a `messages` list.
    capabilities: { 'ap.io.messages': false, 'ap.io.streaming': true },
  };
}
