// SPDX-License-Identifier: Apache-2.0
// Test fixture for the chain-auth plugin: who owns a room and who co-hosts it, as a contract
// the plugin reads with eth_call. Anyone may change anything; it only lives on a local node.
pragma solidity ^0.8.20;

contract Rooms {
    mapping(string => address) private owners;
    mapping(string => mapping(address => bool)) private coHosts;

    event OwnerSet(string room, address owner);
    event CoHostSet(string room, address who, bool yes);

    /// The room's owner; the zero address when it has none.
    function ownerOf(string calldata room) external view returns (address) {
        return owners[room];
    }

    function isCoHost(string calldata room, address who) external view returns (bool) {
        return coHosts[room][who];
    }

    function setOwner(string calldata room, address owner) external {
        owners[room] = owner;
        emit OwnerSet(room, owner);
    }

    function setCoHost(string calldata room, address who, bool yes) external {
        coHosts[room][who] = yes;
        emit CoHostSet(room, who, yes);
    }
}
