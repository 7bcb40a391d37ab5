"""handoffs.integrations: one or two lines trace a team built with an agent framework.

    from handoffs.integrations import autogen, crewai, langgraph, openai_agents
    await openai_agents.run(agent, "task")           # Runner.run, recorded
    await autogen.run(team, task="task")             # team.run, recorded
    graph.invoke(inputs, config={"callbacks": [langgraph.callback()]})
    crewai.kickoff(crew)                             # crew.kickoff, recorded

Each module imports its framework only when called, so importing ``handoffs`` (or this
package) never needs one; install them as extras (``pip install 'handoffs[autogen]'``).
Spans go wherever ``handoffs.sdk.configure`` sends them. ``recorder`` is the shared part.
"""
