%% SPDX-License-Identifier: BSD-2-Clause
%% The system below Erlang, seen from Erlang: the protection domains the supervisor PD
%% restarts (docs/plans/recovery.md). beam_server serves its protocol page as /proc/pds (the
%% table), /proc/pds_events (the recent events, numbered) and /dev/supervisor (requests).
-module(chrysopolis).
-export([pds/0, subscribe/0, unsubscribe/0, restart/1]).

-define(EVENTS, chrysopolis_events).
-define(POLL_MS, 100).

%% Every supervised PD: #{name, state, restarts, last_fault, restart, intensity, period,
%% on_giveup, may_restart}. [] in an image without a supervisor.
-spec pds() -> [map()].
pds() ->
    case file:read_file("/proc/pds") of
        {ok, Text} -> [pd(string:lexemes(L, " ")) || L <- lines(Text)];
        {error, enoent} -> []
    end.

pd([Name, State, Restart, Intensity, Period, GiveUp, May, Restarts | Fault]) ->
    #{name => binary_to_atom(Name),
      state => binary_to_atom(State),
      restart => binary_to_atom(Restart),
      intensity => binary_to_integer(Intensity),
      period => binary_to_integer(Period),
      on_giveup => binary_to_atom(GiveUp),
      may_restart => binary_to_atom(May),
      restarts => binary_to_integer(Restarts),
      last_fault => fault(Fault)}.

fault([<<"none">> | _]) -> none;
fault([Kind, Addr, Ip, T]) ->
    #{kind => binary_to_atom(Kind), addr => hex(Addr), ip => hex(Ip),
      time_ns => binary_to_integer(T)}.

hex(<<"0x", H/binary>>) -> binary_to_integer(H, 16).

lines(Text) -> [L || L <- binary:split(Text, <<"\n">>, [global]), L =/= <<>>].

%% Ask the supervisor to restart the PD `Name`, if the system description allows it.
-spec restart(atom() | string()) -> ok | {error, unknown | not_allowed | stopped | term()}.
restart(Name) ->
    case file:write_file("/dev/supervisor", ["restart ", to_list(Name), "\n"]) of
        ok -> ok;
        {error, enoent} -> {error, unknown};
        {error, eperm} -> {error, not_allowed};
        {error, esrch} -> {error, stopped};
        {error, _} = E -> E
    end.

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(S) -> S.

%% Fault and restart events arrive as {chrysopolis, #{pd, event, n, m, fault}} messages;
%% they go to logger too, whether anyone subscribed or not.
-spec subscribe() -> ok.
subscribe() ->
    watcher() ! {subscribe, self()},
    ok.

-spec unsubscribe() -> ok.
unsubscribe() ->
    case whereis(?EVENTS) of
        undefined -> ok;
        Pid -> Pid ! {unsubscribe, self()}, ok
    end.

%% The one process that reads the events (started on first use, supervised by nobody:
%% it holds no state a restart would lose beyond its subscribers).
watcher() ->
    case whereis(?EVENTS) of
        undefined ->
            Parent = self(),
            {Pid, Ref} = spawn_monitor(fun() -> start_watcher(Parent) end),
            receive
                {?EVENTS, Pid, Winner} -> erlang:demonitor(Ref, [flush]), Winner;
                {'DOWN', Ref, _, _, _} -> watcher()
            end;
        Pid -> Pid
    end.

start_watcher(Parent) ->
    try register(?EVENTS, self()) of
        true ->
            Parent ! {?EVENTS, self(), self()},
            watch(last_seq(), #{})
    catch
        error:badarg -> Parent ! {?EVENTS, self(), whereis(?EVENTS)}
    end.

last_seq() ->
    lists:max([0 | [Seq || {Seq, _} <- events()]]).

events() ->
    case file:read_file("/proc/pds_events") of
        {ok, Text} -> [event(string:lexemes(L, " ")) || L <- lines(Text)];
        {error, _} -> []
    end.

event([Seq, Kind, Pd, N, M | Fault]) ->
    {binary_to_integer(Seq),
     #{pd => binary_to_atom(Pd), event => binary_to_atom(Kind),
       n => binary_to_integer(N), m => binary_to_integer(M), fault => fault(Fault)}}.

watch(Seen, Subs) ->
    receive
        {subscribe, Pid} ->
            watch(Seen, Subs#{Pid => erlang:monitor(process, Pid)});
        {unsubscribe, Pid} ->
            [erlang:demonitor(R, [flush]) || #{Pid := R} <- [Subs]],
            watch(Seen, maps:remove(Pid, Subs));
        {'DOWN', _, process, Pid, _} ->
            watch(Seen, maps:remove(Pid, Subs))
    after ?POLL_MS ->
        New = [E || {Seq, _} = E <- events(), Seq > Seen],
        [tell(E, Subs) || {_, E} <- lists:keysort(1, New)],
        watch(lists:max([Seen | [Seq || {Seq, _} <- New]]), Subs)
    end.

tell(#{event := Kind, pd := Pd} = E, Subs) ->
    Level = case Kind of up -> notice; restart -> notice; _ -> error end,
    logger:log(Level, "chrysopolis: ~p ~p ~p", [Pd, Kind, maps:without([pd, event], E)]),
    [Pid ! {chrysopolis, E} || Pid <- maps:keys(Subs)],
    ok.
