%% SPDX-License-Identifier: BSD-2-Clause
%% The -epmd_module of a node behind QEMU's user network (restrict=on). No epmd runs in a
%% protection domain, and the one way out of the guest is the host alias of
%% chrysopolis/qemu.py (10.0.2.100), where guestfwd rules reach the host's 127.0.0.1. So
%% every other node, whatever the host part of its name, is reached there: its port comes
%% from the host's epmd (10.0.2.100:4369 is forwarded to the host's 127.0.0.1:4369), and
%% its dist port on 10.0.2.100 is forwarded to the same port on the host's 127.0.0.1. The
%% tool registers this node with the host's epmd, at the host port forwarded to its own
%% dist port, so registering here does nothing (docs/distribution.md).
-module(chrysopolis_epmd).

-export([start_link/0, register_node/2, register_node/3, listen_port_please/2,
         port_please/2, port_please/3, address_please/3, names/1]).

-define(HOST_ALIAS, {10, 0, 2, 100}).

start_link() ->
    ignore.

register_node(Name, Port) ->
    register_node(Name, Port, inet).

%% -1: net_kernel picks a random creation, as with a node that keeps no epmd connection.
register_node(_Name, _Port, _Driver) ->
    {ok, -1}.

%% 0: the inet_dist_listen_min/max range the tool sets.
listen_port_please(_Name, _Host) ->
    {ok, 0}.

port_please(Name, Host) ->
    port_please(Name, Host, infinity).

port_please(Name, _Host, Timeout) ->
    erl_epmd:port_please(Name, host(), Timeout).

address_please(_Name, _Host, inet) ->
    {ok, host()};
address_please(_Name, _Host, _Family) ->
    {error, nxdomain}.

names(_Host) ->
    erl_epmd:names(host()).

host() ->
    ?HOST_ALIAS.
